"""Scale offsets (format 5): the encoder may shift each latent group's scales by a whole step of
the 1/8 log2 grid when that codes the plane shorter, and sends the shifts first. Its choices are
made with integer code lengths, so every machine makes the same ones."""
from __future__ import annotations

import constriction
import numpy as np

import icnn_codec as ic
from icnn_codec import entropy
from icnn_codec.priors import COST_FRAC, ExactParams, fixed_log2


def logistic_latents(rng: np.random.Generator, n: int, scale: float) -> np.ndarray:
    u = rng.uniform(1e-9, 1 - 1e-9, n)
    return np.floor(scale * np.log(u / (1 - u)) + 0.5).astype(np.int64)


def test_fixed_log2_is_log2_truncated_to_its_grid():
    v = np.array([1, 2, 3, 5, 1000, 2**24 - 3, 2**24, 2**31 - 1])
    exact = np.log2(v.astype(np.float64)) * 2**COST_FRAC
    got = fixed_log2(v)
    assert np.all(got <= exact + 1e-6) and np.all(exact - got < 2)
    assert list(fixed_log2(np.array([1, 2, 4, 2**20]))) == [0, 1 << COST_FRAC, 2 << COST_FRAC, 20 << COST_FRAC]


def test_the_integer_code_length_is_what_the_coder_spends(model):
    rng = np.random.default_rng(0)
    z = logistic_latents(rng, 20000, 3.0)
    z[:5] = [400, -900, 10**6, -(10**6), 77]  # escapes too
    params = ExactParams.from_grid(np.zeros(z.size, np.int64), np.full(z.size, 13))  # log2 s = 13/8
    coder = constriction.stream.stack.AnsCoder()
    entropy.encode_latents(coder, z, params, model.tables)
    estimate = entropy.code_length(z, params, model.tables) / 2**COST_FRAC
    assert abs(estimate - coder.num_bits()) < 0.002 * coder.num_bits() + 64


def test_each_group_gets_the_offset_of_the_scale_its_latents_have(model):
    rng = np.random.default_rng(1)
    n = 50000
    stated = np.full(n, 8)  # 8 log2 s = 8: s = 2
    groups = [(logistic_latents(rng, n, 2.0 * 2 ** (6 / 8)), np.zeros(n, np.int64), stated),  # wider by 6 steps
              (logistic_latents(rng, n, 2.0), np.zeros(n, np.int64), stated),  # as stated
              (logistic_latents(rng, n, 2.0 * 2 ** (-3 / 8)), np.zeros(n, np.int64), stated)]  # narrower by 3
    assert entropy.choose_scale_offsets(groups, model.tables) == [6, 0, -3]


def test_the_offset_found_is_the_shortest_of_all_offsets(model):
    rng = np.random.default_rng(3)
    n = 4000
    for wider in (-9, -5, -2, 0, 1, 4, 8, 12):  # eighths of log2 s: within and beyond the offsets' range
        z = logistic_latents(rng, n, 2.0 * 2 ** (wider / 8))
        mu16, ls8 = np.zeros(n, np.int64), np.full(n, 8)
        every = [int(entropy.code_length(z, ExactParams.from_grid(mu16, ls8 + d), model.tables))
                 for d in entropy.SCALE_OFFSETS]
        [chosen] = entropy.choose_scale_offsets([(z, mu16, ls8)], model.tables)
        assert every[entropy.SCALE_OFFSETS.index(chosen)] == min(every)


def test_offsets_that_save_less_than_they_cost_are_not_sent(model):
    rng = np.random.default_rng(2)
    n = 200  # a few latents: even a better scale cannot pay for 4 bits an offset
    groups = [(logistic_latents(rng, n, 2.0 * 1.1), np.zeros(n, np.int64), np.full(n, 8)) for _ in range(16)]
    assert entropy.choose_scale_offsets(groups, model.tables) == [0] * 16
    coder = constriction.stream.stack.AnsCoder()
    entropy.encode_scale_offsets(coder, [0] * 16)
    assert coder.num_bits() <= 32  # one flag symbol (a whole word at most)
    assert entropy.decode_scale_offsets(coder, 16) == [0] * 16


def test_offsets_round_trip_through_the_coder():
    offsets = [-8, 7, 0, 3, -1]
    coder = constriction.stream.stack.AnsCoder()
    entropy.encode_scale_offsets(coder, offsets)
    assert entropy.decode_scale_offsets(coder, len(offsets)) == offsets
    assert coder.is_empty()


def test_an_image_unlike_the_training_photographs_is_coded_shorter_with_offsets_and_decodes_exactly(photo, monkeypatch, model_only):
    grey = photo[100:164, 150:246].mean(axis=2).astype(np.int64)
    image = (grey // 4 * 4 + 2).astype(np.uint8)  # steps of 4 levels: unlike any photograph
    chosen = []
    choose = entropy.choose_scale_offsets
    monkeypatch.setattr(entropy, "choose_scale_offsets", lambda g, t: chosen.append(choose(g, t)) or chosen[-1])
    with_offsets = ic.compress(image, model="photo-grey")  # a flow: its latent groups get offsets
    assert any(chosen[0])
    assert np.array_equal(ic.decompress(with_offsets), image)
    monkeypatch.setattr(entropy, "choose_scale_offsets", lambda g, t: [0] * len(g))
    without = ic.compress(image, model="photo-grey")
    assert len(with_offsets) < len(without)
    assert np.array_equal(ic.decompress(without), image)
