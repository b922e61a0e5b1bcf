"""maa_format.safe_yaml: YAML within size, alias-expansion and depth limits, UTF-8 only."""
import time

import pytest

from maa_format.safe_yaml import MAX_BYTES, YamlLoadError, load_file, loads


def bomb(levels: int = 9, fan: int = 10) -> str:
    names = [f"l{i}" for i in range(levels)]
    lines = [f"{names[0]}: &{names[0]} [{', '.join(['lol'] * fan)}]"]
    for prev, name in zip(names, names[1:]):
        lines.append(f"{name}: &{name} [{', '.join([f'*{prev}'] * fan)}]")
    return "\n".join(lines) + "\n"


def one_line(exc: pytest.ExceptionInfo) -> str:
    text = str(exc.value)
    assert "\n" not in text
    return text


def test_ordinary_yaml_json_anchors_and_merge_keys_load():
    assert loads("a: 1\nb: [x, {c: 2.5}]\n") == {"a": 1, "b": ["x", {"c": 2.5}]}
    assert loads('{"a": [1, 2], "b": null}') == {"a": [1, 2], "b": None}
    doc = loads("base: &b {lr: 1.0e-3, x: 1}\nrun:\n  <<: *b\n  x: 2\nagain: *b\n")
    assert doc["run"] == {"lr": 1.0e-3, "x": 2} and doc["again"] == {"lr": 1.0e-3, "x": 1}
    assert loads(bomb(levels=3, fan=10))["l2"][9][9][9] == "lol"  # 1,000 expanded nodes: fine
    assert loads("\ufeffa: 1".encode("utf-8")) == {"a": 1}  # a BOM is not an error


def test_alias_bomb_is_refused_quickly():
    start = time.perf_counter()
    with pytest.raises(YamlLoadError, match=r"bomb\.yaml: more than 100000 nodes once aliases are expanded") as err:
        loads(bomb(), "bomb.yaml")
    assert time.perf_counter() - start < 1.0
    assert "at line 5," in one_line(err)  # where the count passed the limit: level 4 holds 10^5 leaves


def test_recursive_alias_is_refused():
    with pytest.raises(YamlLoadError, match=r"alias \*a .* is inside the node it names"):
        loads("a: &a [1, *a]", "r.yaml")


def test_deep_nesting_is_one_line_not_a_recursion_error():
    for text in ("[" * 50_000 + "]" * 50_000, "a:\n" + "".join(" " * i + "- \n" for i in range(1, 200))):
        with pytest.raises(YamlLoadError, match="nested deeper than 64 levels") as err:
            loads(text, "deep.yaml")
        one_line(err)
    assert loads("[" * 64 + "]" * 64) is not None


def test_huge_file_is_refused_without_reading_it_all(tmp_path):
    path = tmp_path / "huge.yaml"
    with open(path, "wb") as fh:
        fh.write(b"x: 1\n" * (50 * 2**20 // 5))  # 50 MB
    start = time.perf_counter()
    with pytest.raises(YamlLoadError, match=rf"huge\.yaml: larger than {MAX_BYTES} bytes.*1 MiB") as err:
        load_file(path)
    assert time.perf_counter() - start < 1.0
    one_line(err)


def test_non_utf8_and_control_characters(tmp_path):
    path = tmp_path / "latin.yaml"
    path.write_bytes(b"name: caf\xe9\n")
    with pytest.raises(YamlLoadError, match=r"latin\.yaml: not UTF-8 text: byte 0xe9 at offset 9"):
        load_file(path)
    with pytest.raises(YamlLoadError, match=r"character #x0000 at offset 3 is not allowed"):
        loads("a: \x00")


def test_malformed_yaml_names_line_and_column():
    with pytest.raises(YamlLoadError, match=r"x\.yaml: malformed YAML at line 2, column 2: expected ',' or ']'") as err:
        loads("a: [1, 2\nb: 3", "x.yaml")
    one_line(err)
    with pytest.raises(YamlLoadError, match="malformed YAML"):
        loads("a: 1\n---\nb: 2")  # one document per file


def test_missing_file_is_oserror(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_file(tmp_path / "nope.yaml")
