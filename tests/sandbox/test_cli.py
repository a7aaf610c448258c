"""The sandbox's command-line options, shared by `python -m` and `manage.py braze_sandbox`."""

from __future__ import annotations

import argparse

import pytest

from braze_integration.sandbox.cli import add_arguments, config_from_options
from braze_integration.sandbox.config import FaultConfig, format_rate_limit, parse_rate_limit

FULL_ARGV = [
    "--host", "0.0.0.0",
    "--port", "9401",
    "--api-key", "k1",
    "--api-key", "k2",
    "--no-permission-key", "ro",
    "--track-only-key", "t1",
    "--max-objects", "50",
    "--per-array-limit", "75",
    "--rate-limit", "3000/3s",
    "--delete-rate-limit", "100/1m",
    "--error-rate", "0.1",
    "--latency-ms", "50",
    "--timeout-rate", "0.05",
    "--hang-seconds", "2",
    "--seed", "4",
]  # fmt: skip


def parse(argv: list[str]) -> dict:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return vars(parser.parse_args(argv))


@pytest.mark.parametrize(
    ("text", "expected"),
    [("3000/3s", (3000, 3.0)), ("50000/1m", (50000, 60.0)), ("10/1", (10, 1.0)), ("100/h", (100, 3600.0))],
)
def test_given_rate_limit_text_when_parsed_then_limit_and_window_seconds(
    text: str, expected: tuple[int, float]
) -> None:
    assert parse_rate_limit(text) == expected


@pytest.mark.parametrize("text", ["", "3000", "fast", "0/1s", "10/0s", "-1/1s"])
def test_given_malformed_rate_limit_when_parsed_then_value_error(text: str) -> None:
    with pytest.raises(ValueError):
        parse_rate_limit(text)


def test_given_rate_limit_when_formatted_then_parses_back() -> None:
    assert parse_rate_limit(format_rate_limit((10, 1.5))) == (10, 1.5)
    assert format_rate_limit(None) is None


def test_given_every_flag_when_config_built_then_each_lands_in_its_field() -> None:
    config = config_from_options(parse(FULL_ARGV))
    assert config.host == "0.0.0.0" and config.port == 9401
    assert config.api_keys == frozenset({"k1", "k2"})
    assert config.no_permission_keys == frozenset({"ro"})
    assert config.track_only_keys == frozenset({"t1"})
    assert config.delete_rate_limit == (100, 60.0)
    assert (config.max_objects, config.per_array_limit) == (50, 75)
    assert config.rate_limit == (3000, 3.0)
    assert config.faults == FaultConfig(
        error_rate=0.1, latency_ms=50, timeout_rate=0.05, hang_seconds=2, seed=4
    )


def test_given_no_flags_when_config_built_then_braze_defaults() -> None:
    config = config_from_options(parse([]))
    assert config.port == 9400
    assert config.max_objects == 75 and config.per_array_limit is None
    assert config.max_body_bytes == 4 * 1024 * 1024
    assert config.rate_limit == (3000, 3.0)  # Braze's /users/track default
    assert config.delete_rate_limit == (20000, 60.0)  # Braze's /users/delete default
    assert config.track_only_keys == frozenset()
    assert config.faults == FaultConfig()


def test_given_error_rate_above_one_when_config_built_then_value_error() -> None:
    with pytest.raises(ValueError):
        config_from_options(parse(["--error-rate", "1.5"]))


def test_given_bad_rate_limit_flag_when_parsed_then_argparse_exits() -> None:
    with pytest.raises(SystemExit):
        parse(["--rate-limit", "lots"])


def test_given_management_command_when_parsing_same_flags_then_same_config() -> None:
    from braze_integration.management.commands.braze_sandbox import Command

    parser = Command().create_parser("manage.py", "braze_sandbox")
    options = vars(parser.parse_args(FULL_ARGV))
    assert config_from_options(options) == config_from_options(parse(FULL_ARGV))


@pytest.mark.parametrize("word", ["off", "none", "OFF"])
def test_given_rate_limits_turned_off_when_config_built_then_no_limits(word: str) -> None:
    config = config_from_options(parse(["--rate-limit", word, "--delete-rate-limit", word]))
    assert config.rate_limit is None and config.delete_rate_limit is None
