"""Loading plugins: from `[hooks] plugins` and from installed entry points, with
every problem named by its plugin, and the config's overrides applied.

Plugins here are real modules written to a temporary directory put on
`sys.path`; the entry point comes from a real `.dist-info` directory there.
"""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from actors.config import LoadedConfig, parse_config
from actors.errors import PluginError
from actors.events import MESSAGE_SENDING, MODEL_FAILOVER, MODEL_RESPONSE
from actors.plugins import ENTRY_POINT_GROUP, Plugin, load_plugins
from actors.plugins.loader import REGISTER
from runtime import HookBus, Interceptor, Observer
from tests.process import run_cli, write_config

GOOD = """
from actors.events import MESSAGE_SENDING, MODEL_RESPONSE

SEEN = []

def register(plugin):
    @plugin.on(MODEL_RESPONSE, timeout_s=7)
    async def watch(event):
        SEEN.append(event)

    @plugin.intercept(MESSAGE_SENDING, priority=3, fail_open=False)
    async def steer(event):
        return None
"""


@pytest.fixture
def plugin_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "site"
    directory.mkdir()
    monkeypatch.syspath_prepend(str(directory))
    return directory


def module(directory: Path, name: str, source: str) -> str:
    (directory / f"{name}.py").write_text(textwrap.dedent(source))
    sys.modules.pop(name, None)
    return name


def distribution(directory: Path, name: str, entry_points: dict[str, str]) -> None:
    info = directory / f"{name}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    lines = "".join(f"{k} = {v}\n" for k, v in entry_points.items())
    (info / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\n{lines}")


def loaded(tmp_path: Path, hooks: str) -> LoadedConfig:
    import tomllib

    config = parse_config(tomllib.loads(hooks), "test.toml")
    return LoadedConfig(Path("test.toml"), config, tmp_path / "state")


def test_a_module_plugin_registers_with_decorators(plugin_dir: Path, tmp_path: Path) -> None:
    name = module(plugin_dir, "good_plugin", GOOD)
    plugins = load_plugins(loaded(tmp_path, f'[hooks]\nplugins = ["{name}"]\n'))
    (plugin,) = plugins.plugins
    assert (plugin.name, plugin.origin) == ("good_plugin", "config")
    assert plugin.state_dir == tmp_path / "state"
    assert [(r.event, r.kind) for r in plugin.registrations] == [
        (MODEL_RESPONSE, "observer"),
        (MESSAGE_SENDING, "interceptor"),
    ]
    assert plugins.describe() == [
        "good_plugin [config]: model:response, message:sending (interceptor)"
    ]


def test_the_config_overrides_what_the_code_asks_for(plugin_dir: Path, tmp_path: Path) -> None:
    name = module(plugin_dir, "good_plugin2", GOOD)
    bus = HookBus(default_timeout_s=5)
    # The code's own settings first.
    load_plugins(loaded(tmp_path, f'[hooks]\nplugins = ["{name}"]\n')).attach(bus)
    observer, interceptor = _attached(bus)
    assert (observer.timeout_s, observer.name) == (7, "good_plugin2:register.<locals>.watch")
    assert (interceptor.priority, interceptor.fail_open, interceptor.timeout_s) == (3, False, 5)
    # Then the table's.
    bus = HookBus(default_timeout_s=5)
    table = (
        f'[hooks]\nplugins = ["{name}"]\n[hooks.plugin.{name}]\n'
        "timeout_s = 0.5\nfail_open = true\npriority = -1\noptions = { level = 3 }\n"
    )
    plugins = load_plugins(loaded(tmp_path, table))
    plugins.attach(bus)
    observer, interceptor = _attached(bus)
    assert observer.timeout_s == interceptor.timeout_s == 0.5
    assert (interceptor.priority, interceptor.fail_open) == (-1, True)
    assert plugins.plugins[0].options == {"level": 3}
    with pytest.raises(TypeError):
        plugins.plugins[0].options["level"] = 4  # type: ignore[index]


def _attached(bus: HookBus) -> tuple[Observer[Any], Interceptor[Any]]:
    (observer,) = bus.observers(MODEL_RESPONSE)
    (interceptor,) = bus.interceptors(MESSAGE_SENDING)
    return observer, interceptor


def test_every_broken_plugin_is_named(plugin_dir: Path, tmp_path: Path) -> None:
    missing = "no_such_plugin_module"
    syntax = module(plugin_dir, "syntax_plugin", "def register(plugin):\n    return (\n")
    no_register = module(plugin_dir, "quiet_plugin", "X = 1\n")
    raising = module(
        plugin_dir,
        "raising_plugin",
        """
        def register(plugin):
            raise RuntimeError("database unreachable")
        """,
    )
    sync_handler = module(
        plugin_dir,
        "sync_plugin",
        """
        from actors.events import MODEL_RESPONSE

        def register(plugin):
            @plugin.on(MODEL_RESPONSE)
            def not_async(event):
                pass
        """,
    )
    observe_only = module(
        plugin_dir,
        "intercepts_response",
        """
        from actors.events import MODEL_RESPONSE

        def register(plugin):
            @plugin.intercept(MODEL_RESPONSE)
            async def nope(event):
                return None
        """,
    )
    names = [missing, syntax, no_register, raising, sync_handler, observe_only]
    config = f"[hooks]\nplugins = {names!r}\n[hooks.plugin.ghost]\nenabled = true\n".replace(
        "'", '"'
    )
    with pytest.raises(PluginError) as info:
        load_plugins(loaded(tmp_path, config))
    problems = info.value.problems
    assert problems[0] == (
        f"plugin {missing}: cannot import it (config): ModuleNotFoundError: "
        f"No module named '{missing}'"
    )
    assert problems[1].startswith(f"plugin {syntax}: cannot import it (config): SyntaxError:")
    assert problems[2] == (
        f"plugin {no_register}: module {no_register} has no {REGISTER}(plugin) function"
    )
    assert problems[3] == (
        f"plugin {raising}: register() failed: RuntimeError: database unreachable"
    )
    assert problems[4] == (
        f"plugin {sync_handler}: register() failed: TypeError: observer of model:response: "
        "'register.<locals>.not_async' must be an async function (async def)"
    )
    assert problems[5] == (
        f"plugin {observe_only}: register() failed: TypeError: model:response can only be "
        "observed (interceptors run on message:sending, model:failover, model:select)"
    )
    assert problems[6].startswith("hooks.plugin.ghost: no plugin of that name (plugins: ")
    assert len(problems) == 7


def test_a_disabled_plugin_is_not_even_imported(plugin_dir: Path, tmp_path: Path) -> None:
    broken = module(plugin_dir, "broken_but_off", "raise ImportError('would fail')\n")
    config = f'[hooks]\nplugins = ["{broken}"]\n[hooks.plugin.{broken}]\nenabled = false\n'
    plugins = load_plugins(loaded(tmp_path, config))
    assert plugins.plugins == ()
    assert plugins.skipped == (broken,)
    assert broken not in sys.modules


def test_entry_points_are_loaded_unless_disabled(plugin_dir: Path, tmp_path: Path) -> None:
    module(plugin_dir, "ep_module", GOOD)
    module(
        plugin_dir,
        "ep_function",
        """
        from actors.events import MODEL_FAILOVER

        def setup(plugin):
            @plugin.on_model_failover
            async def noticed(event):
                pass
        """,
    )
    distribution(
        plugin_dir, "callboard_extras", {"usage": "ep_module", "alerts": "ep_function:setup"}
    )
    plugins = load_plugins(loaded(tmp_path, "[hooks]\n"))
    found = {p.name: p for p in plugins.plugins}
    assert set(found) == {"usage", "alerts"}
    assert found["usage"].origin == "entry point ep_module of callboard_extras 1.0"
    assert [r.event for r in found["alerts"].registrations] == [MODEL_FAILOVER]
    assert load_plugins(loaded(tmp_path, "[hooks]\nentry_points = false\n")).plugins == ()
    off = "[hooks]\n[hooks.plugin.alerts]\nenabled = false\n"
    assert [p.name for p in load_plugins(loaded(tmp_path, off)).plugins] == ["usage"]


def test_an_entry_point_that_fails_names_its_distribution(plugin_dir: Path, tmp_path: Path) -> None:
    distribution(plugin_dir, "callboard_broken", {"bad": "missing_ep_module"})
    with pytest.raises(PluginError) as info:
        load_plugins(loaded(tmp_path, "[hooks]\n"))
    assert info.value.problems == (
        "plugin bad: cannot import it (entry point missing_ep_module of callboard_broken 1.0): "
        "ModuleNotFoundError: No module named 'missing_ep_module'",
    )


def test_two_plugins_of_one_name_are_an_error(plugin_dir: Path, tmp_path: Path) -> None:
    name = module(plugin_dir, "twice", GOOD)
    distribution(plugin_dir, "callboard_twice", {name: name})
    with pytest.raises(PluginError) as info:
        load_plugins(loaded(tmp_path, f'[hooks]\nplugins = ["{name}"]\n'))
    assert info.value.problems[0].startswith(f"plugin {name}: two plugins have this name")


def test_on_model_failover_takes_arguments_too() -> None:
    from actors.config import PluginSettings

    plugin = Plugin("p", origin="test", settings=PluginSettings(), state_dir=Path())

    @plugin.on_model_failover(ordered=True, timeout_s=1)
    async def noticed(event: object) -> None:
        pass

    (reg,) = plugin.registrations
    assert (reg.event, reg.kind, reg.ordered, reg.timeout_s) == (
        MODEL_FAILOVER,
        "observer",
        True,
        1,
    )


@pytest.mark.process
def test_check_and_run_refuse_a_broken_plugin(tmp_path: Path) -> None:
    config = write_config(tmp_path, '[hooks]\nplugins = ["not_a_real_plugin"]\n')
    for command in ("check", "run"):
        result = run_cli(command, "-c", str(config))
        assert result.returncode == 1
        assert result.stderr.splitlines()[-1] == (
            f"{config}: plugin not_a_real_plugin: cannot import it (config): "
            "ModuleNotFoundError: No module named 'not_a_real_plugin'"
        )
    assert not (tmp_path / "state").exists()


@pytest.mark.process
def test_check_lists_the_plugins(tmp_path: Path) -> None:
    config = write_config(
        tmp_path,
        '[hooks]\nplugins = ["actors.plugins.usage_log", "actors.plugins.failover_notice"]\n',
    )
    result = run_cli("check", "-c", str(config))
    assert result.returncode == 0, result.stderr
    assert "# plugin actors.plugins.usage_log [config]: model:response" in result.stdout
    assert (
        "# plugin actors.plugins.failover_notice [config]: message:sending (interceptor), "
        "model:failover" in result.stdout
    )


def test_the_readme_example_plugin_loads(plugin_dir: Path, tmp_path: Path) -> None:
    readme = (Path(__file__).resolve().parents[3] / "README.md").read_text()
    start = readme.index("# my_plugins/audit.py")
    source = readme[start : readme.index("```", start)]
    package = plugin_dir / "my_plugins"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "audit.py").write_text(source)
    config = '[hooks]\nplugins = ["my_plugins.audit"]\n[hooks.plugin."my_plugins.audit"]\n'
    config += 'timeout_s = 1\nfail_open = false\noptions = { channel = "#ops" }\n'
    plugins = load_plugins(loaded(tmp_path, config))
    assert plugins.describe() == [
        "my_plugins.audit [config]: model:response, message:sending (interceptor), model:failover"
    ]
    sys.modules.pop("my_plugins.audit", None)
    sys.modules.pop("my_plugins", None)
