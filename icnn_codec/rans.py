"""The local AR's entropy coder: rANS over integer rows of counts, compiled, exact everywhere.

The local AR's decoder codes a few dozen samples at a time, each under its own distribution: calling
out to a general coder per line costs more than coding. This one runs inside the decoder's compiled
loops (:mod:`icnn_codec.mixture_core` says what each symbol's frequencies out of 2**PRECISION are).
Integer arithmetic only:

* the coder is rANS with a 64-bit state in [2**31, 2**63) and 32-bit words (as in F. Giesen's
  rans64). The encoder codes the symbols last to first from the state 2**32 + C, C a check of 32
  bits the caller gives (a tile's checksum): the decoder must end in that state, so it checks the
  pixels it decoded against C, and C costs the stream its 32 bits and one more, where a state
  started at a constant carries nothing. Its stream is the final state in as few bytes as hold it
  (5 to 8, little-endian: their count is 5 + (stream length - 5) mod 4), then the words it
  emitted, last emitted first. The decoder reads a word whenever its state falls below 2**31; a
  whole stream ends with every word read and the state back at 2**32 + C.
"""
from __future__ import annotations

import numba
import numpy as np

PRECISION = 24
TOTAL = 1 << PRECISION
_LOW = 1 << 31  # the state's lower bound
_START = 1 << 32  # the encoder's state before it adds the check
_WORD = (1 << 32) - 1
STATE_BYTES = range(5, 9)  # the final state's bytes: their count mod 4 tells them from the words


@numba.njit(cache=True, nogil=True)
def encode(starts, freqs, check):
    """The final state and the words (uint32, in the order the decoder reads them) of symbols given by
    their (start, frequency) out of TOTAL, in the order the decoder pops them, coded from the state
    2**32 + ``check``."""
    emitted = np.empty(len(starts), dtype=np.uint32)  # a symbol emits one word at most
    count = 0
    x = np.int64(_START + check)
    for i in range(len(starts) - 1, -1, -1):
        f = freqs[i]
        if x >= (f << (63 - PRECISION)):
            emitted[count] = x & _WORD
            count += 1
            x >>= 32
        x = ((x // f) << PRECISION) + (x % f) + starts[i]
    return x, emitted[:count][::-1].copy()


def stream_bytes(state: int, words: np.ndarray) -> bytes:
    """A stream's bytes: the final state in the fewest of :data:`STATE_BYTES` that hold it, then the words."""
    size = max(STATE_BYTES.start, (int(state).bit_length() + 7) // 8)
    return int(state).to_bytes(size, "little") + np.asarray(words, dtype="<u4").tobytes()


def parse(stream: bytes) -> tuple[int, np.ndarray]:
    """A stream's final state and words; ValueError for bytes no encoder writes."""
    if len(stream) < STATE_BYTES.start:
        raise ValueError("an rANS stream shorter than its state")
    size = STATE_BYTES.start + (len(stream) - STATE_BYTES.start) % 4
    state = int.from_bytes(stream[:size], "little")
    if not _LOW <= state < 1 << 63:
        raise ValueError("an rANS stream's state outside [2**31, 2**63)")
    if size > STATE_BYTES.start and state < 1 << (8 * size - 8):
        raise ValueError("an rANS stream's state in more bytes than it needs")
    return state, np.frombuffer(stream[size:], "<u4").astype(np.uint32)


@numba.njit(cache=True, nogil=True)
def slot(state) -> int:
    """Where the decoder's state ``state[0]`` points among the 2**PRECISION frequencies: the next
    symbol is the one whose [start, start + frequency) holds it."""
    return state[0] & (TOTAL - 1)


@numba.njit(cache=True, nogil=True)
def advance(words, end: int, state, at, first: int, freq: int) -> None:
    """Move the decoder (``state[0]``, next word ``words[at[0]]``, the stream ending at ``end``) past the
    symbol that holds its slot, [first, first + freq)."""
    x = state[0]
    x = freq * (x >> PRECISION) + (x & (TOTAL - 1)) - first
    if x < _LOW:
        if at[0] >= end:
            raise ValueError("an rANS stream ran out of words")
        x = (x << 32) | np.int64(words[at[0]])
        at[0] += 1
    state[0] = x


@numba.njit(cache=True, nogil=True)
def pop_uniform(words, end: int, state, at, bits: int) -> int:
    """Pop one symbol of 2**bits equally likely ones (bits <= PRECISION)."""
    freq = TOTAL >> bits
    symbol = slot(state) // freq
    advance(words, end, state, at, symbol * freq, freq)
    return symbol


ORDER_BITS = 4  # an exp-Golomb order, 0..15, as a uniform symbol


def exp_golomb(values: np.ndarray, order: int) -> list[tuple[np.ndarray, int]]:
    """Signed integers as exp-Golomb codes of ``order`` in uniform symbols, (symbols, bits) pairs in
    the order they are popped: each value v as u = 2v (v >= 0) or -2v - 1, then u + 2**order of n
    bits as n - 1 - order symbols 0 of one bit, a symbol 1 of one bit, and its n - 1 low bits as one
    symbol (none when n = 1)."""
    pairs: list[tuple[np.ndarray, int]] = []
    for v in np.asarray(values, dtype=np.int64).tolist():
        u = 2 * v if v >= 0 else -2 * v - 1
        code = u + (1 << order)
        low = code.bit_length() - 1
        pairs.append((np.array([0] * (low - order) + [1]), 1))
        if low:
            pairs.append((np.array([code - (1 << low)]), low))
    return pairs


def exp_golomb_length(values: np.ndarray, order: int) -> int:
    """Bits of :func:`exp_golomb`'s code of ``values``."""
    values = np.asarray(values, dtype=np.int64)
    low = np.frexp(np.where(values >= 0, 2 * values, -2 * values - 1) + (1 << order))[1] - 1  # exact below 2**53
    return int((2 * low + 1 - order).sum())


class Encoder:
    """Symbols to code, in the order the decoder pops them; :meth:`words` codes them all."""

    def __init__(self) -> None:
        self.starts: list[np.ndarray] = []
        self.freqs: list[np.ndarray] = []

    def push(self, starts: np.ndarray, freqs: np.ndarray) -> None:
        self.starts.append(np.asarray(starts, dtype=np.int64))
        self.freqs.append(np.asarray(freqs, dtype=np.int64))

    def push_uniform(self, symbols: np.ndarray, bits: int) -> None:
        """Symbols of 2**bits equally likely ones."""
        step = TOTAL >> bits
        self.push(np.asarray(symbols, dtype=np.int64) * step, np.full(len(symbols), step))

    def stream(self, check: int = 0) -> bytes:
        """The stream of every symbol pushed, whose decoder ends in the state 2**32 + ``check``
        (0 <= check < 2**32)."""
        if not 0 <= check < 1 << 32:
            raise ValueError(f"a check {check} beyond 32 bits")
        if not self.starts:
            return stream_bytes(*encode(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), check))
        return stream_bytes(*encode(np.concatenate(self.starts), np.concatenate(self.freqs), check))


class Streams:
    """The decoders of a batch of streams, in one array of words for the compiled loops: stream g ends
    at words[ends[g]], its state is states[g] and its next word words[ats[g]]. ValueError for a
    stream no encoder writes."""

    def __init__(self, streams: list[bytes]) -> None:
        states, words = zip(*map(parse, streams)) if streams else ((), ())
        self.words = np.concatenate([np.zeros(0, dtype=np.uint32), *words]).astype(np.uint32)
        self.ends = np.cumsum([len(w) for w in words]).astype(np.int64)
        self.ats = self.ends - np.array([len(w) for w in words], dtype=np.int64)
        self.states = np.array(states, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.ends)

    def pop_uniform(self, g: int, count: int, bits: int) -> np.ndarray:
        """``count`` symbols of 2**bits equally likely ones off stream g."""
        state, at = self.states[g : g + 1], self.ats[g : g + 1]
        return np.array([pop_uniform(self.words, int(self.ends[g]), state, at, bits) for _ in range(count)], dtype=np.int64)

    def pop_exp_golomb(self, g: int, count: int, order: int) -> np.ndarray:
        """``count`` signed integers coded by :func:`exp_golomb` of ``order`` off stream g."""
        out = np.empty(count, dtype=np.int64)
        for i in range(count):
            low = order
            while self.pop_uniform(g, 1, 1)[0] == 0:
                low += 1
                if low > PRECISION:
                    raise ValueError("an exp-Golomb code longer than any the encoder writes")
            code = (1 << low) + (int(self.pop_uniform(g, 1, low)[0]) if low else 0)
            u = code - (1 << order)
            out[i] = u // 2 if u % 2 == 0 else -(u + 1) // 2
        return out

    def all_read(self) -> bool:
        """Whether every stream's every word has been read."""
        return bool((self.ats == self.ends).all())

    def checks(self) -> np.ndarray:
        """The check each stream's state ends in (what its encoder was given, if the stream is sound
        and has been read to its end)."""
        return self.states - _START

    def all_ended(self, check: int = 0) -> bool:
        """Whether every stream ended where an encoder given ``check`` began: every word read, the
        state back at 2**32 + check."""
        return self.all_read() and bool((self.checks() == check).all())
