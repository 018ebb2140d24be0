"""The layering check itself (``tools/layering.py``, run by ``tools/dev lint``), on
synthetic crates: it finds what it must, and nothing else. No era module is needed."""

from __future__ import annotations

from pathlib import Path

import layering


def crate(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = tmp_path / "src" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


def edges(tmp_path: Path, files: dict[str, str]) -> list[tuple[str, int, str, str]]:
    violations, unknown = layering.check_crate(crate(tmp_path, files))
    assert not unknown
    return [(v.path.name, v.line, v.source, v.target) for v in violations]


LAYERED = {
    "lib.rs": "use crate::{coroutine, slots};\nfn f() { crate::repair::apply(); }\n",
    "compat.rs": "use crate::ffi::PyIter_Check;\n",
    "ffi.rs": "",
    "repair.rs": "use crate::{compat, ffi::shim};\n",
    "protocol.rs": "use crate::compat::stop_iteration;\n",
    "slots.rs": "use crate::protocol::{Step, panic_error};\nuse crate::compat;\n",
    "coroutine.rs": "use crate::{protocol::{State, Step}, slots::Stepped};\n",
    "bridge.rs": "use crate::slots::Stepped;\n",
    "futures.rs": "use crate::bridge::RustFuture;\nfn g() { crate::compat::x(); }\n",
}


def test_a_layered_crate_passes(tmp_path):
    assert edges(tmp_path, LAYERED) == []


def test_every_form_of_a_forbidden_use_is_found(tmp_path):
    files = dict(
        LAYERED,
        **{
            "driver.rs": "",
            "delegate.rs": (
                "use crate::protocol::Step;\n"
                "use crate::{compat, driver::await_iter};\n"  # line 2: driver
                "use crate::{\n    slots,\n    coroutine::{a, b},\n};\n"  # line 5: coroutine
                "fn f() {\n"
                "    let x = crate::bridge::poll_once();\n"  # line 8: bridge
                "    let v = crate::PYO3_VERSION;\n"  # line 9: an item of lib
                "    super::futures::sleep();\n"  # line 10: super is the crate root
                "}\n"
            ),
            "slots.rs": "fn install() { install::<crate::coroutine::RustCoroutine>(); }\n",
        },
    )
    assert edges(tmp_path, files) == [
        ("delegate.rs", 2, "delegate", "driver"),
        ("delegate.rs", 5, "delegate", "coroutine"),
        ("delegate.rs", 8, "delegate", "bridge"),
        ("delegate.rs", 9, "delegate", "lib"),
        ("delegate.rs", 10, "delegate", "futures"),
        ("slots.rs", 1, "slots", "coroutine"),
    ]


def test_comments_strings_and_nested_modules_are_not_uses(tmp_path):
    files = dict(
        LAYERED,
        **{
            "driver.rs": (
                "//! Unlike [`crate::coroutine::RustCoroutine`], ...\n"
                "/* crate::delegate::x /* nested */ crate::bridge::y */\n"
                'const S: &str = "crate::futures::sleep";\n'
                'const R: &str = r#"crate::futures::"sleep""#;\n'
                "fn f<'a>(x: &'a str) -> char { let _ = 'c'; '\"' }\n"
                "#[cfg(test)]\nmod tests {\n    use super::*;\n    use super::f;\n}\n"
            ),
        },
    )
    assert edges(tmp_path, files) == []


def test_an_unknown_module_is_reported(tmp_path):
    _, unknown = layering.check_crate(crate(tmp_path, {"lib.rs": "", "helpers.rs": ""}))
    assert len(unknown) == 1
    assert "'helpers'" in unknown[0]


def test_a_module_directory_is_one_module(tmp_path):
    files = {"lib.rs": "", "slots/mod.rs": "use crate::coroutine::X;\n", "coroutine.rs": ""}
    assert edges(tmp_path, files) == [("mod.rs", 1, "slots", "coroutine")]
