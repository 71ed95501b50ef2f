"""benchmarks/benchmark.py, the one benchmark entry point: what it refuses before anything
runs, and which input cases it times."""

import os

import pytest

import benchmark
from harness import suites


def test_a_missing_categories_file_stops_the_r50_suites_first(tmp_path, capsys):
    missing = str(tmp_path / "categories.json")
    for suite in suites.R50_SUITES:
        code = benchmark.main(["--suites", suite, "--categories", missing, "--no-torch",
                               "--out", str(tmp_path / "out.json")])
        assert code == 2
        assert missing in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "out.json")


def test_a_missing_torch_python_stops_a_peer_suite(tiny_files, tmp_path):
    with pytest.raises(SystemExit, match="torch python not found"):
        benchmark.main(["--suites", "memory", "--categories", tiny_files[1],
                        "--torch-python", str(tmp_path / "python")])


def test_the_coco_sample_case_runs_where_the_sample_is(tmp_path, capsys):
    assert suites.input_cases(str(tmp_path)) == suites.INPUT_CASES
    assert "coco_sample left out" in capsys.readouterr().out
    (tmp_path / "panoptic.json").write_text("{}")
    assert suites.input_cases(str(tmp_path)) == (*suites.INPUT_CASES, "coco_sample")


def test_every_suite_has_a_runner():
    args = benchmark.parse_args(["--suites", *suites.SUITES])
    assert set(benchmark.suite_runners(args, None, [])) == set(suites.SUITES) == set(args.suites)
