"""The transport interface: what moves the link's bytes between the host and a device.

A transport moves the link's bytes (docs/link.md), so the driver
(:class:`~tritium.host.accelerator.Accelerator`) is the same over every backend:

- ``send(data)``: hand bytes to the device;
- ``receive(timeout) -> bytes``: what has arrived, at least one byte, or raise
  :class:`~tritium.host.link.LinkTimeout` after ``timeout`` seconds;
- ``close()``;
- optionally ``load_image(image)``: put a compiled model's memory image
  (``CompiledModel.image``) into the device's memory directly; where a transport has
  it, :meth:`Accelerator.load` uses it instead of WRITE frames;
- optionally ``write_memory(address, data)`` and ``read_memory(address, words) ->
  bytes``: store and fetch bus words of the device's memory directly (word addresses,
  as WRITE and READ frames take them), visible to the device before the next command
  and reading what it has written; where a transport has them,
  :meth:`Accelerator.run_states` moves the io region through them instead of WRITE and
  READ frames (the Zynq transport: its DDR buffer).

Every backend (``device_model``, ``sim_transport``, ``serial_transport``,
``zynq_transport``) imports this module; the registry that opens one by name is
:mod:`tritium.host.transports`.
"""

__all__ = ["Closeable", "Transport"]


class Closeable:
    """Something to ``close()``, usable as a context manager that closes it."""

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()


class Transport(Closeable):
    """The byte-stream interface every backend implements; usable as a context manager."""

    def send(self, data: bytes) -> None:
        raise NotImplementedError

    def receive(self, timeout: float) -> bytes:
        raise NotImplementedError
