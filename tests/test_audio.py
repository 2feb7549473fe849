"""The audio plugin: every CLI verb on a tiny WaveNet of the built-in notes, trained and exported; the cached step
against the full network; ONNX Runtime against PyTorch over 1,000 steps; the conformance kit; and bad WAV folders."""

from __future__ import annotations

import json
import wave
from pathlib import Path

import numpy as np
import pytest

import genloom
from genloom.testing import check_generator
from genloom_audio import WaveNet
from genloom_audio.data import load_notes
from genloom_audio.evaluation import dominant_frequency, note_frequency
from genloom_audio.mulaw import decode, encode
from genloom_audio.wav import write_wav
from tests.conftest import assert_one_line_error, cli_in_process, run_cli

TINY = {
    "layers_per_cycle": 3,
    "cycles": 1,
    "residual_channels": 8,
    "gate_channels": 8,
    "skip_channels": 8,
    "segment": 64,
}
FORMS = ("trained", "export")


def ok(*args: str) -> str:
    result = cli_in_process(*args)
    assert result.returncode == 0, (args, result.stdout, result.stderr)
    return result.stdout


def tiny_settings(**more: object) -> list[str]:
    return [part for key, value in {**TINY, **more}.items() for part in ("--set", f"{key}={json.dumps(value)}")]


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny WaveNet trained on the notes with `genloom train` and exported with `genloom export`."""
    root = tmp_path_factory.mktemp("audio")
    trained, exported = root / "wavenet", root / "wavenet-onnx"
    assert f"model saved in {trained}" in ok(
        "train", "wavenet", "--data", "notes", "--out", str(trained), "--steps", "4", "--quiet", *tiny_settings()
    )
    assert f"exported 'wavenet' to {exported}" in ok("export", str(trained), "--out", str(exported))
    return {"trained": trained, "export": exported}


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    with wave.open(str(path), "rb") as handle:
        assert handle.getnchannels() == 1 and handle.getsampwidth() == 2
        return np.frombuffer(handle.readframes(handle.getnframes()), dtype="<i2"), handle.getframerate()


def test_training_writes_sample_clips_and_their_spectrogram(models: dict[str, Path]) -> None:
    samples = models["trained"] / "samples"
    clips, rate = read_wav(next(samples.glob("samples-*.wav")))
    assert rate == 16_000 and len(clips) == 4 * 4000 + 3 * 1600  # four 0.25 s clips, 0.1 s of silence between
    assert next(samples.glob("samples-*.png")).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("form", FORMS)
def test_generate_writes_one_wav_per_clip_with_the_requested_labels(
    models: dict[str, Path], tmp_path: Path, form: str
) -> None:
    out = tmp_path / "clips"
    printed = ok(
        "generate",
        str(models[form]),
        "-n",
        "4",
        "--labels",
        "0,3",
        "--seed",
        "1",
        "--set",
        "seconds=0.05",
        "--out",
        str(out),
    )
    assert f"wrote 4 clips of 0.05 s at 16000 Hz to {out}/" in printed
    names = sorted(path.name for path in out.iterdir())
    assert names == ["clip-000-label0.wav", "clip-001-label3.wav", "clip-002-label0.wav", "clip-003-label3.wav"]
    samples, rate = read_wav(out / names[1])
    assert rate == 16_000 and len(samples) == 800
    result = genloom.load(models[form]).generate(n=4, labels=[0, 3], seed=1, seconds=0.05)
    assert np.array_equal(np.rint(result.array[1] * 32767).astype(np.int16), samples)
    assert result.labels.tolist() == [0, 3, 0, 3] and result.sample_rate == 16_000


@pytest.mark.parametrize("form", FORMS)
def test_the_same_seed_gives_the_same_clips(models: dict[str, Path], form: str) -> None:
    model = genloom.load(models[form])
    first, again, other = (model.generate(n=3, seed=seed, seconds=0.02).array for seed in (4, 4, 5))
    assert np.array_equal(first, again) and not np.array_equal(first, other)
    assert first.shape == (3, 320) and np.abs(first).max() <= 1


def test_the_export_gives_the_trained_models_clips(models: dict[str, Path]) -> None:
    """Both draw each sample with the same numpy code from logits that differ by float32 noise (the parity gate,
    below, bounds it); on these 4 x 1,600 draws no level differs."""
    settings = {"n": 4, "seed": 9, "seconds": 0.1, "labels": [1, 6]}
    trained = genloom.load(models["trained"]).generate(**settings).array
    exported = genloom.load(models["export"]).generate(**settings).array
    assert np.array_equal(trained, exported)


def test_the_onnx_step_matches_the_torch_cached_step_over_1000_steps(models: dict[str, Path]) -> None:
    """Teacher-forced on the same 1,000 levels, the logits of every step agree within 1e-4; free-running from the
    same seed at temperature 0, a level may differ only where the torch step's top two logits are within 1e-3 of
    each other (a tie that float32 noise can turn), and such flips are counted."""
    from genloom_audio.nets import TorchStepRunner

    trained, exported = genloom.load(models["trained"]), genloom.load(models["export"])
    torch_runner, onnx_runner = TorchStepRunner(trained.generator.net), exported.runner
    levels = encode(load_notes(None).clips[0][:1000])
    labels = np.array([2, 5])
    for runner in (torch_runner, onnx_runner):
        runner.reset(labels, 2)
    largest = 0.0
    for level in levels:
        feed = np.array([level, level])
        largest = max(largest, float(np.abs(torch_runner.advance(feed) - onnx_runner.advance(feed)).max()))
    assert largest < 1e-4, largest
    flips, close = 0, 0
    for runner in (torch_runner, onnx_runner):
        runner.reset(labels, 2)
    torch_level = onnx_level = np.full(2, 128)
    for _ in range(1000):
        torch_logits, onnx_logits = torch_runner.advance(torch_level), onnx_runner.advance(onnx_level)
        top_two = np.sort(torch_logits, axis=1)[:, -2:]
        close += int((top_two[:, 1] - top_two[:, 0] < 1e-3).sum())
        torch_level, onnx_level = torch_logits.argmax(1), onnx_logits.argmax(1)
        if not np.array_equal(torch_level, onnx_level):
            flips += 1
            onnx_level = torch_level  # carry on from the same level, counting each flip once
    assert flips <= close, (flips, close)


@pytest.mark.parametrize("num_classes", [3, 0])
def test_the_cached_step_computes_what_the_full_network_computes(num_classes: int) -> None:
    """Fast WaveNet: one step per layer with each layer's queue gives, at every position, the logits of the full
    causal network over the whole sequence (which the naive sampler re-runs for every sample); conditional or not."""
    import torch

    from genloom_audio.nets import TorchStepRunner
    from genloom_audio.nets import WaveNet as Net

    torch.manual_seed(0)
    net = Net(residual=8, gate=8, skip=8, dilations=[1, 2, 4, 8, 1, 2, 4, 8], num_classes=num_classes).eval()
    with torch.no_grad():  # biases a fresh network has near zero, made large enough that a wrong one shows
        for layer in net.residual_layers:
            layer.conv.bias.normal_(0, 1)
    levels = torch.randint(0, 256, (2, 200))
    labels = torch.tensor([0, 2]) if num_classes else None
    with torch.no_grad():
        full = net(levels, labels).permute(0, 2, 1).numpy()
        runner = TorchStepRunner(net)
        runner.reset(None if labels is None else labels.numpy(), 2)
        stepped = np.stack([runner.advance(levels[:, t].numpy()) for t in range(200)], axis=1)
    assert np.abs(full - stepped).max() < 1e-5


@pytest.mark.parametrize("num_classes", [2, 0])
def test_the_naive_sampler_makes_the_cached_samplers_clips(num_classes: int) -> None:
    """The naive reference (the whole receptive field re-run for every sample) and the cached step draw the same
    levels from the same seed: the benchmark times two ways of computing one thing."""
    import torch

    from genloom_audio.kind import AudioSampling
    from genloom_audio.nets import NaiveStepRunner, TorchStepRunner
    from genloom_audio.nets import WaveNet as Net
    from genloom_audio.sampler import ClipFormat, generate_clips

    torch.manual_seed(1)
    net = Net(residual=8, gate=8, skip=8, dilations=[1, 2, 4, 8], num_classes=num_classes).eval()
    settings = AudioSampling(n=2, seed=3, seconds=0.01, labels=[1, 0] if num_classes else None)
    clip_format = ClipFormat(sample_rate=16_000, clip_seconds=0.01, receptive_field=16, num_classes=num_classes)
    naive = generate_clips(NaiveStepRunner(net), settings, clip_format, generator="t")
    cached = generate_clips(TorchStepRunner(net), settings, clip_format, generator="t")
    assert np.array_equal(naive.array, cached.array) and naive.array.shape == (2, 160)
    assert len(np.unique(naive.array)) > 10  # it did sample, not sit on one level


def test_schema_lists_the_wavenets_knobs() -> None:
    printed = ok("schema", "wavenet")
    for knob in ("layers_per_cycle", "cycles", "residual_channels", "sample_rate", "clip_seconds", "onset_fraction"):
        assert knob in printed, knob


@pytest.mark.parametrize("form", FORMS)
def test_info_eval_and_bench(models: dict[str, Path], tmp_path: Path, form: str) -> None:
    model = models[form]
    details = json.loads(ok("info", str(model), "--json"))
    assert details["modality"] == "audio" and details["facts"]["class_names"][0] == "C4"
    report = json.loads(ok("eval", str(model), "--data", "notes", "--seeds", "1", "--json"))
    figures = report["figures"]
    for figure in ("label_accuracy", "pitch_accuracy"):
        assert 0 <= figures[figure] <= 1 and figures[f"real_{figure}"] >= 0.9, figure
    assert figures["real_stft_distance"] < figures["stft_distance"] and figures["realtime_factor"] > 0
    out = tmp_path / "bench.json"
    ok("bench", str(model), "--repeats", "1", "--json", str(out))
    assert any(row["path"] == "onnxruntime fp32" for row in json.loads(out.read_text())["outputs"])


def test_eval_prints_each_figure_beside_the_real_clips_figure(models: dict[str, Path]) -> None:
    printed = ok("eval", str(models["export"]), "--data", "notes", "--seeds", "1")
    assert printed.splitlines()[1].split() == ["model", "real"]
    rows = {line[:30].strip(): line[30:].split() for line in printed.splitlines()[2:]}
    assert len(rows["pitch accuracy"]) == 2 and len(rows["stft distance"]) == 2, printed


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_wavenet_conforms(tmp_path: Path) -> None:
    check_generator(WaveNet, data="notes", workdir=tmp_path, **{"steps": 2, **TINY})


def test_notes_are_the_same_every_time_and_sound_their_note() -> None:
    first, again = load_notes(None), load_notes(None)
    assert len(first) == 512 and first.class_names == ["C4", "D4", "E4", "F4", "G4", "A4", "B4", "C5"]
    assert np.array_equal(first.clips[7], again.clips[7]) and np.bincount(first.labels).tolist() == [64] * 8
    for clip, label in zip(first.clips[:32], first.labels[:32], strict=True):
        target = note_frequency(first.class_names[label])
        assert target is not None and abs(1200 * np.log2(dominant_frequency(clip, 16_000) / target)) < 50


def test_mu_law_keeps_quiet_samples_finer_than_loud_ones() -> None:
    x = np.linspace(-1, 1, 20001)
    error = np.abs(decode(encode(x)) - x)
    assert error.max() < 0.025 and error[np.abs(x) < 0.01].max() < 3e-4
    assert encode(np.zeros(1))[0] == 128 and encode(np.array([-1.0, 1.0])).tolist() == [0, 255]


def test_a_wav_folder_with_class_folders_trains_stereo_441_khz_converted_with_a_note(tmp_path: Path) -> None:
    t = np.arange(4410) / 44100
    for name, frequency in (("low", 220.0), ("high", 440.0)):
        (tmp_path / "data" / name).mkdir(parents=True)
        for index in range(2):
            write_wav(tmp_path / "data" / name / f"{index}.wav", 0.5 * np.sin(2 * np.pi * frequency * t), 16_000)
    stereo = np.stack([np.sin(2 * np.pi * 220 * t), np.sin(2 * np.pi * 330 * t)], axis=1)
    from scipy.io import wavfile

    wavfile.write(tmp_path / "data" / "low" / "stereo.wav", 44100, (0.5 * stereo * 32767).astype(np.int16))
    trained = run_cli(
        "train",
        "wavenet",
        "--data",
        f"wav-folder:{tmp_path / 'data'}",
        "--out",
        str(tmp_path / "m"),
        "--steps",
        "2",
        "--quiet",
        *tiny_settings(validation_fraction=0),
    )
    assert trained.returncode == 0, trained.stderr
    assert "stereo.wav is stereo at 44100 Hz; mixed down to mono, resampled to 16000 Hz" in trained.stderr
    facts = json.loads((tmp_path / "m" / "manifest.json").read_text())["facts"]
    assert facts["class_names"] == ["high", "low"] and facts["clips"] == 5 and facts["sample_rate"] == 16_000


def test_bad_wav_folders_are_one_line_and_nothing_is_written(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "corrupt").mkdir()
    write_wav(tmp_path / "corrupt" / "good.wav", np.zeros(4000), 16_000)
    (tmp_path / "corrupt" / "broken.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunk")
    (tmp_path / "short").mkdir()
    write_wav(tmp_path / "short" / "long.wav", np.zeros(4000), 16_000)
    write_wav(tmp_path / "short" / "blip.wav", np.zeros(100), 16_000)
    cases = {
        "empty": ("no .wav files in", "add some"),
        "corrupt": ("cannot read", "broken.wav", "re-save it"),
        "short": ("blip.wav is 100 samples", "shorter than the receptive field of 1023 samples", "remove it"),
    }
    for folder, fragments in cases.items():
        out = tmp_path / f"model-{folder}"
        refused = run_cli("train", "wavenet", "--data", f"wav-folder:{tmp_path / folder}", "--out", str(out))
        assert_one_line_error(refused, *fragments)
        assert not out.exists(), folder


def test_a_label_the_model_was_not_trained_on_is_one_line(models: dict[str, Path], tmp_path: Path) -> None:
    refused = run_cli("generate", str(models["trained"]), "-n", "2", "--labels", "8", "--out", str(tmp_path / "c"))
    assert_one_line_error(refused, "labels: 8 is not a trained class", "use 0..7")
    assert not (tmp_path / "c").exists()


def test_generate_to_a_wav_file_writes_every_clip_in_it_and_the_spectrogram_beside_it(
    models: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "take.wav"
    out.write_bytes(b"an earlier take")  # a file named by --out is replaced
    printed = ok("generate", str(models["export"]), "-n", "2", "--set", "seconds=0.05", "--out", str(out))
    assert f"wrote 2 clips to {out} and their spectrogram to {out.with_suffix('.png')}" in printed
    samples, _ = read_wav(out)
    assert len(samples) == 2 * 800 + 1600 and out.with_suffix(".png").read_bytes()[:4] == b"\x89PNG"
    (tmp_path / "busy.png").mkdir()
    refused = cli_in_process("generate", str(models["trained"]), "-n", "1", "--out", str(tmp_path / "busy.wav"))
    assert_one_line_error(refused, "--out (its spectrogram)", "busy.png' is a directory")
    assert not (tmp_path / "busy.wav").exists()


def test_an_fp16_export_generates_with_float16_queues(models: dict[str, Path], tmp_path: Path) -> None:
    exported = tmp_path / "fp16"
    ok("export", str(models["trained"]), "--out", str(exported), "--fp16")
    model = genloom.load(exported, precision="fp16")
    assert model.runner.dtypes[0] == np.float16
    clips = model.generate(n=2, seed=1, labels=[0, 1], seconds=0.02).array
    assert clips.shape == (2, 320) and np.isfinite(clips).all()


def test_sampling_and_shape_settings_out_of_range_are_one_line(models: dict[str, Path], tmp_path: Path) -> None:
    for temperature, fragment in (("1e-320", "at least 0.001"), ("NaN", "finite number")):
        refused = cli_in_process("generate", str(models["trained"]), "--set", f"temperature={temperature}")
        assert_one_line_error(refused, "temperature", fragment)
    one_layer = cli_in_process(
        "train", "wavenet", "--data", "notes", "--out", str(tmp_path / "m"), *tiny_settings(layers_per_cycle=1)
    )
    assert_one_line_error(one_layer, "layers_per_cycle x cycles is 1", "at least 2 layers")
    assert not (tmp_path / "m").exists()


def test_resume_refuses_a_change_to_what_the_model_was_trained_as(tmp_path: Path) -> None:
    out = tmp_path / "m"
    ok("train", "wavenet", "--data", "notes", "--out", str(out), "--steps", "1", "--quiet", *tiny_settings())
    for field, value in (("sample_rate", "8000"), ("conditional", "false"), ("cycles", "2")):
        refused = cli_in_process(
            "train", "wavenet", "--data", "notes", "--out", str(out), "--resume", "--set", f"{field}={value}"
        )
        assert_one_line_error(refused, f"{field}: the run in", "cannot change when the run resumes")


def test_eval_on_data_of_other_classes_is_one_line(models: dict[str, Path], tmp_path: Path) -> None:
    for name in ("low", "high"):
        (tmp_path / "other" / name).mkdir(parents=True)
        for index in range(4):
            write_wav(tmp_path / "other" / name / f"{index}.wav", np.zeros(2000), 16_000)
    for index in range(8):
        write_wav(tmp_path / f"loose-{index}.wav", np.zeros(2000), 16_000)
        (tmp_path / "unlabelled").mkdir(exist_ok=True)
        (tmp_path / f"loose-{index}.wav").rename(tmp_path / "unlabelled" / f"{index}.wav")
    cases = {"other": "holds ['high', 'low']", "unlabelled": "has no labels"}
    for folder, fragment in cases.items():
        refused = cli_in_process(
            "eval", str(models["trained"]), "--data", f"wav-folder:{tmp_path / folder}", "--seeds", "1"
        )
        assert_one_line_error(refused, "classes ['C4'", fragment)
