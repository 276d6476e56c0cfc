"""companion.reproducibility: seed_everything seeds every generator; environment_report says what made a result;
ResultsWriter gives every benchmark results file the same metadata."""

import json
import random
import re
import subprocess
import sys
from dataclasses import asdict, fields
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import torch

import companion
from companion import reproducibility
from companion.reproducibility import (
    REPORTED_PACKAGES,
    RESULTS_METADATA,
    Report,
    ResultsWriter,
    command_line,
    environment_report,
    seed_everything,
)


@pytest.fixture(autouse=True)
def _restore_global_generators():
    """Leave the global random streams as they were, so seeding here cannot leak into other tests."""
    python, numpy, torch_state = random.getstate(), np.random.get_state(), torch.get_rng_state()  # noqa: NPY002
    yield
    random.setstate(python)
    np.random.set_state(numpy)  # noqa: NPY002
    torch.set_rng_state(torch_state)


def draws() -> tuple[float, np.ndarray, torch.Tensor]:
    return random.random(), np.random.rand(3), torch.rand(3)  # noqa: NPY002


def test_same_seed_same_draws_from_python_numpy_and_torch():
    seed_everything(123)
    first = draws()
    draws()  # move the streams on
    seed_everything(123)
    second = draws()
    assert first[0] == second[0]
    np.testing.assert_array_equal(first[1], second[1])
    assert torch.equal(first[2], second[2])


def test_different_seeds_give_different_draws():
    seed_everything(1)
    first = draws()
    seed_everything(2)
    second = draws()
    assert first[0] != second[0]
    assert not np.array_equal(first[1], second[1])
    assert not torch.equal(first[2], second[2])


def test_returned_generator_is_seeded_like_the_global_stream():
    generator = seed_everything(7)
    assert isinstance(generator, torch.Generator)
    assert generator.initial_seed() == 7
    assert torch.equal(torch.rand(5, generator=generator), torch.rand(5))


def test_returned_generator_is_independent_of_the_global_stream():
    generator = seed_everything(7)
    expected = torch.rand(4, generator=torch.Generator().manual_seed(7))
    torch.rand(100)  # use the global stream
    assert torch.equal(torch.rand(4, generator=generator), expected)


def test_large_seed_is_reduced_for_numpy():
    seed_everything(2**40 + 5)
    value = np.random.rand()  # noqa: NPY002
    np.random.seed(5)  # noqa: NPY002
    assert value == np.random.rand()  # noqa: NPY002


@pytest.mark.parametrize("seed", [-1, True, 1.0, "1", None])
def test_bad_seed_is_a_clear_error(seed):
    with pytest.raises(ValueError, match=rf"seed must be an int in \[0, 2\*\*63\), got {seed!r}"):
        seed_everything(seed)


def test_seed_too_large_for_torch_is_a_clear_error():
    with pytest.raises(ValueError, match=r"seed"):
        seed_everything(2**64)


def test_environment_report_on_cpu(no_course_device):
    report = environment_report(seed=3, device=torch.device("cpu"))
    assert isinstance(report, Report)
    assert report.seed == 3
    assert report.device == "cpu"
    assert report.device_name  # the processor or machine name, never empty
    assert list(report.packages) == list(REPORTED_PACKAGES)  # no cuda/cudnn rows on the CPU
    assert report.packages["numpy"] == np.__version__
    assert torch.__version__.startswith(report.packages["torch"])  # the wheel's version, without a "+cu..." tag


def test_environment_report_defaults_to_pick_device(no_course_device):
    assert environment_report().device == str(companion.pick_device())
    assert environment_report().seed is None


def test_report_prints_one_aligned_row_per_item():
    report = Report(
        seed=0, device="cpu", device_name="x86", python="3.12.1", platform="Linux", packages={"torch": "2.5"}
    )
    assert str(report).splitlines() == [
        "seed      0",
        "device    cpu (x86)",
        "python    3.12.1",
        "platform  Linux",
        "torch     2.5",
    ]


def test_environment_report_names_the_mps_device():
    report = environment_report(device=torch.device("mps"))
    assert report.device_name == "Apple GPU (MPS)"
    assert "cuda" not in report.packages


def test_environment_report_adds_cuda_versions_on_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA Test GPU")
    monkeypatch.setattr(torch.version, "cuda", "12.4")
    monkeypatch.setattr(torch.backends.cudnn, "version", lambda: 90100)
    report = environment_report(seed=0, device=torch.device("cuda"))
    assert report.device_name == "NVIDIA Test GPU"
    assert report.packages["cuda"] == "12.4"
    assert report.packages["cudnn"] == "90100"
    assert re.search(r"^device +cuda \(NVIDIA Test GPU\)$", str(report), re.MULTILINE)
    assert re.search(r"^cudnn +90100$", str(report), re.MULTILINE)


def test_missing_package_is_reported_not_raised():
    assert reproducibility._version("surely-not-an-installed-package-xyz") == "not installed"


def test_repository_file_is_found_in_a_parent_folder_or_downloaded(tmp_path, monkeypatch):
    from companion.reproducibility import repository_file

    (tmp_path / "benchmarks" / "results").mkdir(parents=True)
    (tmp_path / "benchmarks" / "results" / "x.json").write_text("{}")
    (tmp_path / "book" / "part2").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "book" / "part2")
    assert repository_file("benchmarks/results/x.json") == tmp_path / "benchmarks" / "results" / "x.json"
    fetched = []

    def fake_download(url, target):
        fetched.append(url)
        target.write_text("fetched")

    monkeypatch.setattr(reproducibility.urllib.request, "urlretrieve", fake_download)
    path = repository_file("benchmarks/results/not_here.json")
    assert path == tmp_path / "book" / "part2" / "not_here.json"
    assert path.read_text() == "fetched"
    assert fetched == [reproducibility.REPOSITORY_RAW + "benchmarks/results/not_here.json"]
    assert repository_file("benchmarks/results/not_here.json") == path  # downloaded once
    assert len(fetched) == 1


# ---------------------------------------------------------------- the benchmarks' results files


def test_results_writer_puts_the_metadata_before_the_results(tmp_path):
    writer = ResultsWriter("python benchmarks/x.py --fast", seed=1, device=torch.device("cpu"))
    sum(i * i for i in range(200_000))  # some CPU time to count
    written = writer.write(tmp_path / "deep" / "x.json", {"rows": [1, 2]})
    assert json.loads((tmp_path / "deep" / "x.json").read_text()) == written
    assert list(written) == [*RESULTS_METADATA, "rows"]
    assert written["command"] == "python benchmarks/x.py --fast"
    assert written["environment"] == asdict(environment_report(seed=1, device=torch.device("cpu")))
    assert written["threads"] == torch.get_num_threads()
    assert 0 < written["cpu_seconds_total"] < 60
    assert len(written["load_average_at_start"]) == len(written["load_average_at_end"]) == 3
    date = datetime.fromisoformat(written["date"])
    assert date.utcoffset() == timedelta(0)
    assert abs(datetime.now(UTC) - date) < timedelta(minutes=1)
    assert not list(tmp_path.glob("deep/*.partial"))


def test_results_writer_counts_the_invocations_it_resumes():
    fresh = ResultsWriter("c", device=torch.device("cpu"))
    resumed = ResultsWriter("c", device=torch.device("cpu"), cpu_seconds_before=100.0)
    assert 100 <= resumed.cpu_seconds_total() < 100 + fresh.cpu_seconds_total() + 1


def test_results_writer_counts_the_cpu_of_its_finished_children():
    writer = ResultsWriter("c", device=torch.device("cpu"))
    subprocess.run([sys.executable, "-c", "sum(i * i for i in range(3_000_000))"], check=True)
    assert writer.cpu_seconds_total() > 0.05


def test_results_may_not_overwrite_the_metadata():
    with pytest.raises(ValueError, match=r"metadata keys \['date', 'threads'\]"):
        ResultsWriter("c", device=torch.device("cpu")).document({"threads": 4, "date": "yesterday", "rows": []})


def test_command_line_names_the_script_from_the_repository_root():
    script = "/somewhere/benchmarks/memory_vs_lag.py"
    assert command_line(script, ["--lags", "5", "10"]) == "python benchmarks/memory_vs_lag.py --lags 5 10"
    assert command_line(script, ["--out", "a b.json"]) == "python benchmarks/memory_vs_lag.py --out 'a b.json'"


RESULTS = sorted((Path(__file__).parents[2] / "benchmarks" / "results").glob("*.json"))


@pytest.mark.parametrize("path", RESULTS, ids=[path.name for path in RESULTS])
def test_every_committed_results_file_carries_the_metadata(path):
    """What ResultsWriter writes; a file migrated from before it says why a value it could not know is null."""
    results = json.loads(path.read_text())
    assert set(RESULTS_METADATA) <= set(results), f"{path.name} lacks {set(RESULTS_METADATA) - set(results)}"
    assert re.fullmatch(r"(\S*python3? )?benchmarks/\w+\.py( .*)?", results["command"]), results["command"]
    datetime.fromisoformat(results["date"])
    unknown = {key for key in RESULTS_METADATA if results[key] is None}
    assert unknown <= set(results.get("metadata_notes", {})), f"{path.name}: {unknown} null without a note"
    if results["environment"] is not None:
        assert set(results["environment"]) == {field.name for field in fields(Report)}
