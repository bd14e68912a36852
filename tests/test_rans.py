"""The local AR's rANS coder: any symbols under any frequencies come back, and cost what they should."""
from __future__ import annotations

import numpy as np
import pytest

from icnn_codec import rans


def random_symbols(seed: int, count: int) -> tuple[np.ndarray, np.ndarray]:
    """(start, frequency) pairs of symbols out of rans.TOTAL, from near-certain to one in 2**24."""
    rng = np.random.default_rng(seed)
    freqs = np.clip((rans.TOTAL * rng.random(count) ** 6).astype(np.int64), 1, rans.TOTAL)
    starts = (rng.random(count) * (rans.TOTAL - freqs + 1)).astype(np.int64)
    return starts, freqs


def pop_all(streams: rans.Streams, g: int, starts: np.ndarray, freqs: np.ndarray) -> list[int]:
    """Pop each symbol, checking the slot falls in the symbol the encoder coded."""
    slots = []
    for first, freq in zip(starts, freqs):
        slot = rans.slot(streams.states[g : g + 1])
        slots.append(first <= slot < first + freq)
        rans.advance(streams.words, int(streams.ends[g]), streams.states[g : g + 1], streams.ats[g : g + 1], first, freq)
    return slots


@pytest.mark.parametrize("count", [0, 1, 7, 5000])
def test_every_symbol_comes_back_and_the_stream_ends_where_it_began(count):
    starts, freqs = random_symbols(count, count)
    encoder = rans.Encoder()
    encoder.push(starts, freqs)
    encoder.push_uniform(np.array([0, 65535, 12345]), 16)
    streams = rans.Streams([encoder.stream()])
    assert all(pop_all(streams, 0, starts, freqs))
    assert list(streams.pop_uniform(0, 3, 16)) == [0, 65535, 12345]
    assert streams.all_ended()


def test_a_stream_costs_its_symbols_information_its_checks_33_bits_and_three_bytes_at_most():
    """A state sent in its fewest bytes wastes one at most, the coder's rounding ~0.001 bits a symbol."""
    starts, freqs = random_symbols(1, 20000)
    encoder = rans.Encoder()
    encoder.push(starts, freqs)
    bits = 8 * len(encoder.stream())
    information = float(-np.log2(freqs / rans.TOTAL).sum())
    assert information + 32 <= bits <= information + 33 + 24


@pytest.mark.parametrize("symbols", [[], [0], [255, 3], [255, 3, 17]])
def test_a_few_symbols_are_the_state_alone_the_check_and_their_bits_rounded_up_to_bytes(symbols):
    encoder = rans.Encoder()
    encoder.push_uniform(np.array(symbols, dtype=np.int64), 8)
    stream = encoder.stream(check=2**32 - 1)
    assert len(stream) == -(-(33 + 8 * len(symbols)) // 8)
    streams = rans.Streams([stream])
    assert list(streams.pop_uniform(0, len(symbols), 8)) == symbols
    assert streams.all_ended(check=2**32 - 1) and not streams.all_ended(check=0)


@pytest.mark.parametrize("count", [5, 6, 7, 20])
def test_the_final_state_takes_the_fewest_bytes_and_a_padded_one_is_refused(count):
    encoder = rans.Encoder()
    encoder.push_uniform(np.arange(count) % 251, 8)
    stream = encoder.stream()
    state, words = rans.parse(stream)
    assert len(stream) == max(5, -(-state.bit_length() // 8)) + 4 * len(words)
    with pytest.raises(ValueError, match="outside"):  # below where any encoder's state ends
        rans.Streams([bytes(5) + words.astype("<u4").tobytes()])
    if len(stream) - 4 * len(words) < 8:  # the same state in one byte more
        size = len(stream) - 4 * len(words)
        with pytest.raises(ValueError, match="more bytes than it needs"):
            rans.Streams([state.to_bytes(size + 1, "little") + words.astype("<u4").tobytes()])


def test_streams_decode_side_by_side_each_from_its_own_words():
    pairs = [random_symbols(seed, 300 + seed) for seed in range(3)]
    coded = []
    for starts, freqs in pairs:
        encoder = rans.Encoder()
        encoder.push(starts, freqs)
        coded.append(encoder.stream())
    streams = rans.Streams(coded)
    for g in (2, 0, 1):
        assert all(pop_all(streams, g, *pairs[g]))
    assert streams.all_ended()


def test_a_stream_cut_short_runs_out_of_words_or_does_not_end_where_it_began():
    starts, freqs = random_symbols(4, 3000)
    encoder = rans.Encoder()
    encoder.push(starts, freqs)
    try:
        streams = rans.Streams([encoder.stream()[:-5]])
        pop_all(streams, 0, starts, freqs)
    except ValueError:
        return
    assert not streams.all_ended()


@pytest.mark.parametrize("order", [0, 1, 5, 12, 15])
def test_signed_exp_golomb_codes_come_back_and_cost_what_they_are_said_to(order):
    values = np.array([0, 1, -1, 2, -2, 7, -300, 4096, -32767, 32767])
    pairs = rans.exp_golomb(values, order)
    encoder = rans.Encoder()
    for symbols, bits in pairs:
        encoder.push_uniform(symbols, bits)
    streams = rans.Streams([encoder.stream()])
    assert np.array_equal(streams.pop_exp_golomb(0, len(values), order), values)
    assert streams.all_ended()
    assert sum(len(symbols) * bits for symbols, bits in pairs) == rans.exp_golomb_length(values, order)


def test_an_exp_golomb_code_is_short_for_values_its_order_fits():
    """Order k: 0 costs k + 1 bits, and so does every u = 2|v| (or 2|v| - 1) below 2**k; each doubling
    of u beyond costs two more."""
    assert rans.exp_golomb_length(np.array([0]), 0) == 1 and rans.exp_golomb_length(np.array([0]), 6) == 7
    assert rans.exp_golomb_length(np.array([31]), 6) == 7 and rans.exp_golomb_length(np.array([32]), 6) == 9
    assert rans.exp_golomb_length(np.array([1000]), 0) == 2 * 10 + 1  # u = 2000: 11 bits
