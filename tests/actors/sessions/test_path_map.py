"""Path mapping between host and container, both ways."""

from __future__ import annotations

import pytest

from actors.sessions.path_map import PathMap


def test_no_map_leaves_paths_alone() -> None:
    assert PathMap().to_local("/data/x.jsonl") == "/data/x.jsonl"
    assert PathMap({}).to_stored("C:\\x") == "C:\\x"


@pytest.mark.parametrize(
    ("mapping", "local", "stored"),
    [
        (
            {"/home/me/.callboard": "/data"},
            "/home/me/.callboard/sessions/a.jsonl",
            "/data/sessions/a.jsonl",
        ),
        (
            {"/home/me/.callboard/": "/data/"},
            "/home/me/.callboard/sessions/a.jsonl",
            "/data/sessions/a.jsonl",
        ),
        ({"/home/me/.callboard": "/data/"}, "/home/me/.callboard", "/data"),
        ({"/srv": "/data", "/srv/big": "/mnt/big"}, "/srv/big/s/a.jsonl", "/mnt/big/s/a.jsonl"),
        ({"/srv": "/data", "/srv/big": "/mnt/big"}, "/srv/other/a.jsonl", "/data/other/a.jsonl"),
        (
            {"C:\\Users\\me\\cb": "/data"},
            "C:\\Users\\me\\cb\\sessions\\a.jsonl",
            "/data/sessions/a.jsonl",
        ),
        ({"/data": "D:/state"}, "/data/sessions/a.jsonl", "D:\\state\\sessions\\a.jsonl"),
    ],
)
def test_both_directions(mapping: dict[str, str], local: str, stored: str) -> None:
    paths = PathMap(mapping)
    assert paths.to_stored(local) == stored
    assert paths.to_local(stored).replace("\\", "/").rstrip("/") == local.replace("\\", "/").rstrip(
        "/"
    )


def test_only_whole_components_match() -> None:
    paths = PathMap({"/data": "/srv"})
    assert paths.to_stored("/database/a") == "/database/a"
    assert paths.to_local("/srvx/a") == "/srvx/a"


def test_windows_prefixes_match_case_and_slash_insensitively() -> None:
    paths = PathMap({"c:/Users/Me/cb": "/data"})
    assert paths.to_stored("C:\\users\\me\\CB\\s\\a.jsonl") == "/data/s/a.jsonl"
    assert paths.to_local("/data/s/a.jsonl") == "c:\\Users\\Me\\cb\\s\\a.jsonl"
    assert PathMap({"/data": "C:\\cb"}).to_stored("/data/s/a.jsonl") == "C:\\cb\\s\\a.jsonl"
