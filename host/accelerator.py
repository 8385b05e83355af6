"""The accelerator driver: load a model, then prefill, decode and generate on a device.

:class:`Accelerator` speaks only the link protocol (docs/link.md) over a byte
transport (:mod:`.transports`), so it drives the software device, the
cycle-accurate simulation and boards with the same bytes. Per run it writes the
tokens' ids (a design with device embedding, which looks up their rows itself) or
embeddings (host embedding) to the io region, sends RUN with the run's ``position`` and
``tokens`` (its reply carries the status and the cycles) and reads the final hidden
states back; the host's embedding lookup and the LM head are the golden model's, so the
logits are bit-identical to :meth:`GoldenModel.forward` (docs/program.md). A design with
the head on the device (``config.head == "device"``) also returns the last token's
top-k (:meth:`Accelerator.prefill_top`), reading those few words instead of the hidden
states, and nothing after a prompt's earlier runs: what keeps greedy decoding's link
traffic small. A design with both on the device also decodes several greedy steps in
one run (:meth:`Accelerator.decode_greedy`), each step's input the step before's
choice, so a run's frames are paid once for all its tokens.
"""

import numpy as np

from tritium.hw.config import AcceleratorConfig
from tritium.hw.control.isa import REGISTERS, STATUS, WRITABLE_REGISTERS, design_steps
from tritium.hw.link.protocol import PROTOCOL_VERSION
from tritium.sim.golden.model import final_logits
from tritium.sim.reference import LOGIT_ROWS
from .compiler import CompiledModel, compile_model, decode_top, run_inputs
from .errors import InputError, TritiumError
from .link import DeviceInfo, LinkClient, LinkError, pad_to_words
from .runtime import check_generation, check_token_ids, generate

__all__ = ["DesignMismatchError", "RunError", "Accelerator"]

STATUS_NAMES = {code: name for name, code in STATUS.items()}


class DesignMismatchError(LinkError):
    """The device is not the design the host compiled for."""


class RunError(TritiumError):
    """A run ended with a non-zero status."""


class Accelerator:
    """One device behind ``transport``, running models compiled for ``config``.

    A conversation is the KV cache's contents from position 0 to :attr:`position`;
    :meth:`prefill` and :meth:`decode` append to it, :meth:`reset` starts a new one.
    Every input check happens before anything is sent to the device.
    """

    def __init__(self, config: AcceleratorConfig, transport, timeout: float = 10.0):
        self.config = config
        self.transport = transport
        self.link = LinkClient(transport, timeout)
        self.compiled: CompiledModel = None
        self.run_cycles = []            # each run's cycles (RUN's reply), in order
        self.run_steps = []             # and its steps (decode_greedy's; else 1)
        self._model = None
        self._position = 0
        self._program = None            # the ``program`` register, as last set
        self._steps = None              # the ``steps`` register, as last set

    def close(self) -> None:
        self.transport.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    @property
    def position(self) -> int:
        """Tokens of the current conversation in the KV cache."""
        return self._position

    def check_device(self) -> DeviceInfo:
        """Ask the device who it is; raise :class:`DesignMismatchError` unless it is
        the design of ``config``."""
        info = self.link.info()
        expected = {"version": PROTOCOL_VERSION, "design": self.config.design_id,
                    "word_bytes": self.config.data_width // 8,
                    "max_payload": self.config.max_payload}
        if info.design != expected["design"]:
            raise DesignMismatchError(
                f"the device runs design id 0x{info.design:08x}, but accelerator "
                f"{self.config.name!r} is design id 0x{expected['design']:08x}: it was "
                f"built from another configuration")
        for name, value in expected.items():
            if getattr(info, name) != value:
                raise DesignMismatchError(
                    f"the device reports {name} = {getattr(info, name)}, but accelerator "
                    f"{self.config.name!r} has {name} = {value}")
        return info

    def load(self, model) -> CompiledModel:
        """Compile ``model``, check the device, write the image and start a conversation.

        The image goes in WRITE frames, each acknowledged by the device; a transport
        with ``load_image`` (the Zynq transport, which fills the device's DDR buffer
        directly) places it itself, and the first and last word of every region are
        then read back over the link.
        """
        compiled = compile_model(model, self.config)
        self.check_device()
        if hasattr(self.transport, "load_image"):
            self.transport.load_image(compiled.image)
            self._check_image(compiled.image)
        else:
            for address, data in compiled.image:
                self.link.write(address, data)
        self._program = self._steps = None
        self._use_program(compiled.program_address)
        self._use_steps(1)
        self.compiled, self._model, self._position = compiled, model, 0
        return compiled

    def _check_image(self, image) -> None:
        """Raise :class:`TritiumError` unless the device reads what ``load_image`` placed.

        Nothing acknowledged those bytes, and a wrong base address or an unflushed
        cache would go unseen until the logits came out wrong. Reading all of it back
        would move the image over the link after all, so two words per region: enough
        to show the device sees this buffer, at this base, after the flush.
        """
        word_bytes = self.config.memory.bytes_per_word
        for address, data in image:
            data = pad_to_words(data, word_bytes)
            words = len(data) // word_bytes
            for word in sorted({0, words - 1} if words else ()):
                expected = data[word * word_bytes:(word + 1) * word_bytes]
                if self.link.read(address + word, 1) != expected:
                    raise TritiumError(
                        f"the device reads word {address + word} of the loaded image "
                        f"differently from what the transport's load_image wrote: its "
                        f"memory is not the buffer that was filled (base address, cache "
                        f"flush)")

    def reset(self, position: int = 0) -> None:
        """Start a new conversation at ``position`` (default 0; the old cache entries are
        overwritten). A later position continues from whatever the KV cache holds below
        it, e.g. a cache image a benchmark stored through a backdoor."""
        limit = self._loaded().config.max_context
        if isinstance(position, bool) or not isinstance(position, int) \
                or not 0 <= position <= limit:
            raise InputError(f"a conversation position must be an integer from 0 to the "
                             f"context of {limit} tokens, not {position!r}")
        self._position = position

    def prefill(self, token_ids, logits: str = "all") -> np.ndarray:
        """Append tokens to the conversation; return their logits, (tokens, vocab), or
        with ``logits="last"`` the last token's only, (1, vocab): the head then runs
        once for the whole prompt.

        The tokens go in runs of up to ``max_tokens``; if a run fails, :attr:`position`
        counts the tokens of the runs before it.
        """
        if logits not in LOGIT_ROWS:
            raise InputError(f"logits must be one of {', '.join(LOGIT_ROWS)}, not {logits!r}")
        ids = self._checked(token_ids)
        states = [self._run(run) for run in self._runs(ids)]
        if logits == "last":
            return final_logits(self.compiled.qmodel, states[-1][-1:])
        return np.concatenate([final_logits(self.compiled.qmodel, run) for run in states])

    def decode(self, token_id) -> np.ndarray:
        """Append one token; return its logits, (vocab,)."""
        return self.prefill([token_id])[0]

    @property
    def head_on_device(self) -> bool:
        """Whether the design scores the LM head itself (:meth:`prefill_top`)."""
        return self.config.head == "device"

    def prefill_top(self, token_ids, k: int = None):
        """Append tokens to the conversation; return the device head's ``k`` best rows
        for the last token, ``(indices (k,), scores (k,))`` int64, score descending and
        equal scores by row ascending (``golden.model.final_top``), so ``indices[0]`` is
        the greedy choice. ``k`` is 1 .. ``config.head_k`` (default ``head_k``): the
        host reads ``k`` words after the last run and no hidden states at all.

        The tokens go in runs of up to ``max_tokens``, as in :meth:`prefill`. Only for a
        design with ``head = "device"``.
        """
        if not self.head_on_device:
            raise InputError(f"accelerator {self.config.name!r} has its LM head on the "
                             f"host: use prefill for logits")
        k = self.config.head_k if k is None else k
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) \
                or not 1 <= k <= self.config.head_k:
            raise InputError(f"k must be an integer from 1 to the design's head_k of "
                             f"{self.config.head_k}, not {k!r}")
        ids = self._checked(token_ids)
        runs = self._runs(ids)
        for run in runs[:-1]:
            self._run_io(run_inputs(self._model, self.config, run), len(run))
        top = self._run_io(run_inputs(self._model, self.config, runs[-1]), len(runs[-1]),
                           read=(self.compiled.top_address, int(k)), head=True)
        return decode_top(top, self.config)

    @property
    def max_steps(self) -> int:
        """The most greedy steps one run makes (:meth:`decode_greedy`): ``MAX_STEPS`` on
        a design that looks up embeddings and scores the head itself, else 1
        (``isa.design_steps``)."""
        return design_steps(self.config)

    def decode_greedy(self, token_id, steps: int) -> np.ndarray:
        """Append ``token_id`` and the ``steps - 1`` tokens the device then chooses, in
        one run of ``steps`` steps (docs/program.md, "Steps"): each step appends its
        input and chooses the argmax of the head, which is the next step's input.
        Returns the ``steps`` choices, int64 (steps,), the last one not appended (as
        :meth:`prefill_top`'s choice is not); :attr:`position` advances by ``steps``.
        The host reads the choices after the run only, ``steps`` words. Only on a design
        of several steps (:attr:`max_steps` > 1), for 1 .. :attr:`max_steps` steps."""
        if self.max_steps == 1:
            raise InputError(f"accelerator {self.config.name!r} does not choose its own "
                             f"tokens (it needs the embedding and the head on the device): "
                             f"decode one token a run with prefill_top or decode")
        if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) \
                or not 1 <= steps <= self.max_steps:
            raise InputError(f"steps must be an integer from 1 to the design's "
                             f"{self.max_steps}, not {steps!r}")
        ids = self._checked([token_id])
        data = self._run_io(run_inputs(self._model, self.config, ids), 1, steps=int(steps),
                            read=(self.compiled.io_address + 1, int(steps)), head=True)
        return decode_top(data, self.config)[0]

    @property
    def model_config(self):
        """The loaded model's config (its context and vocabulary)."""
        return self._loaded().config

    def generate(self, prompt_ids, count: int, check=None, eos_ids=()):
        """Greedily generate ``count`` token ids after the prompt, yielding each as it
        comes and stopping after one of ``eos_ids``: :func:`tritium.host.runtime.generate`
        on this device, its checks made now."""
        return generate(self, prompt_ids, count, check, eos_ids)

    def check_generation(self, prompt_ids, count: int) -> np.ndarray:
        """Raise :class:`InputError` unless ``count`` tokens can be generated after the
        prompt in this conversation; return the prompt's checked ids."""
        return check_generation(prompt_ids, count, self.model_config, self._position)

    def counters(self) -> dict:
        """The read-only registers (status, cycle counters, runs, design) by name."""
        return {name: self.link.get(index) for name, index in REGISTERS.items()
                if name not in WRITABLE_REGISTERS}

    def _loaded(self):
        if self._model is None:
            raise InputError("no model is loaded on the accelerator: call load(model) first")
        return self._model

    def _checked(self, token_ids) -> np.ndarray:
        config = self._loaded().config
        ids = check_token_ids(token_ids, config.vocab_size)
        if len(ids) == 0:
            raise InputError("cannot run an empty token sequence")
        if self._position + len(ids) > config.max_context:
            raise InputError(f"{self._position + len(ids)} tokens exceed the context of "
                             f"{config.max_context} tokens of model {config.name!r}")
        return ids

    def _runs(self, ids: np.ndarray) -> list:
        """``ids`` cut into the runs of up to ``max_tokens`` tokens that carry them."""
        size = self.config.max_tokens
        return [ids[start:start + size] for start in range(0, len(ids), size)]

    def _run(self, ids: np.ndarray) -> np.ndarray:
        """One run of up to ``max_tokens`` tokens: token ids (device embedding) or their
        embeddings (host embedding) in, final hidden states out, (tokens, hidden)."""
        return self._run_states(run_inputs(self._model, self.config, ids), len(ids))

    def run_states(self, states) -> np.ndarray:
        """One run of the device on hidden states: ``states`` (tokens, hidden), int32
        Q19.12, 1 .. ``max_tokens`` tokens at the conversation's position, go to the io
        region; the final hidden states come back, (tokens, hidden) int64. The
        conversation advances by the tokens. Only for a design with host embedding
        (``config.embedding == "host"``), whose program starts from hidden states; a
        design that looks up embeddings itself takes token ids (:meth:`prefill`)."""
        hidden = self.config.model.hidden
        if self.config.embedding != "host":
            raise InputError(f"accelerator {self.config.name!r} looks up token embeddings "
                             f"itself: it runs token ids (prefill, decode), not hidden states")
        states = np.asarray(states)
        if states.ndim != 2 or states.shape[1] != hidden \
                or not 1 <= states.shape[0] <= self.config.max_tokens:
            raise InputError(f"a run takes (1 .. {self.config.max_tokens}, {hidden}) hidden "
                             f"states, not an array of shape {states.shape}")
        return self._run_states(states.astype("<i4").tobytes(), states.shape[0])

    def _run_states(self, inputs: bytes, tokens: int) -> np.ndarray:
        """A run that reads its final hidden states back, (tokens, hidden) int64."""
        hidden = self.config.model.hidden
        data = self._run_io(inputs, tokens, read=(self.compiled.states_address,
                                                  tokens * hidden // self.config.lanes))
        return np.frombuffer(data, dtype="<i4").astype(np.int64).reshape(tokens, hidden)

    def _run_io(self, inputs: bytes, tokens: int, read: tuple = None,
                head: bool = False, steps: int = 1) -> bytes:
        """Write a run's inputs to the io region, run ``tokens`` tokens at the
        conversation's position (``steps`` times, a token a step after the first) and
        return the ``read = (word address, words)`` of its results (the hidden states, a
        device head's top-k, or the steps' choices), nothing for None: a run before the
        last of a prompt needs no results at all. Only a ``head`` run takes the program
        with the device head; the others skip its pass over the head."""
        compiled = self.compiled
        appended = tokens + steps - 1
        if self._position + appended > self._loaded().config.max_context:
            raise InputError(f"{self._position + appended} tokens exceed the context of "
                             f"{self._model.config.max_context} tokens")
        self._write_memory(compiled.io_address, inputs)
        self._use_program(compiled.program_address if head
                          else compiled.no_head_program_address)
        self._use_steps(steps)
        status = self.link.run(position=self._position, tokens=tokens)
        self.run_cycles.append(self.link.last_run.cycles)
        self.run_steps.append(steps)
        if status != STATUS["OK"]:
            name = STATUS_NAMES.get(status, "unknown")
            what = f"{steps} steps" if steps > 1 else f"{tokens} tokens"
            raise RunError(f"the device ended the run of {what} at position "
                           f"{self._position} with status {status} ({name})")
        data = b"" if read is None else self._read_memory(*read)
        self._position += appended
        return data

    def _use_program(self, address: int) -> None:
        """SET ``program`` to ``address`` unless it holds it already: a device-head
        design switches programs only around a prompt of several runs, so a decode step
        costs no frame for it."""
        if address != self._program:
            self._program = None            # unknown if the SET fails
            self.link.set(REGISTERS["program"], address)
            self._program = address

    def _use_steps(self, steps: int) -> None:
        """SET ``steps`` unless it holds the value already (as :meth:`_use_program`)."""
        if steps != self._steps:
            self._steps = None
            self.link.set(REGISTERS["steps"], steps)
            self._steps = steps

    def _write_memory(self, address: int, data: bytes) -> None:
        """Store ``data`` from word ``address`` of the device's memory: through the
        transport's ``write_memory`` where it has one (the Zynq transport: straight into
        the DDR buffer, flushed before this returns, so before the RUN that reads it),
        else in WRITE frames."""
        write = getattr(self.transport, "write_memory", None)
        if write is None:
            self.link.write(address, data)
        else:
            write(address, data)

    def _read_memory(self, address: int, words: int) -> bytes:
        """``words`` words from word ``address`` of the device's memory: through the
        transport's ``read_memory`` where it has one, else in READ frames."""
        read = getattr(self.transport, "read_memory", None)
        return self.link.read(address, words) if read is None else read(address, words)
