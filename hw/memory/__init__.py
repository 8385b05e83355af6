"""Memory ports: the interface and its implementations (on-chip, simulation models, AXI4)."""

from .axi import AXI4Master, AXI4Signature
from .board import BoardMemory
from .onchip import OnChipMemory
from .port import MemoryConfig, MemoryPortSignature, command_layout, read_data_layout
from .simmodel import SIM_MEMORY_PIPELINE_CYCLES, SimMemory

__all__ = ["MemoryConfig", "MemoryPortSignature", "command_layout", "read_data_layout",
           "OnChipMemory", "SimMemory", "SIM_MEMORY_PIPELINE_CYCLES", "AXI4Master",
           "AXI4Signature", "BoardMemory"]
