"""One table of user options (clipascene_core/options.py): the CLI, the API and the Inkscape
dialog offer the same options with the same defaults and limits."""

from __future__ import annotations

from pathlib import Path

import pytest
from lxml import etree

from clipascene_backend.params import JobParams
from clipascene_core.cli.args import config_from_args
from clipascene_core.cli.commands import build_parser
from clipascene_core.config import ConfigError, config_from_options, make_config
from clipascene_core.options import OPTIONS, parse_layers

ROOT = Path(__file__).resolve().parent.parent
INX = ROOT / "inkscape_ext" / "clipascene_sketch.inx"
NS = {"i": "http://www.inkscape.org/namespace/inkscape/extension"}


def inx_params() -> dict[str, etree._Element]:
    root = etree.parse(str(INX)).getroot()
    return {param.get("name"): param for param in root.iterfind(".//i:param", NS)}


def inx_default(param) -> str:
    """A parameter's default as Inkscape reads it: an option group's first option."""
    options = param.findall("i:option", NS)
    return options[0].get("value") if options else (param.text or "").strip()


def preset_value(name: str):
    """What a None ('the preset's') default means, in the dialog's terms."""
    standard = make_config("standard")
    return {"layers": ",".join(map(str, standard.layers)), "rows": standard.simplicity_rows,
            "strokes": standard.strokes, "seed": standard.seeds[0]}.get(name, 0)


@pytest.mark.parametrize("option", OPTIONS, ids=lambda option: option.name)
def test_the_dialog_offers_each_option_as_the_table_declares_it(option):
    param = inx_params()[option.name]
    text = (param.text or "").strip()
    if option.kind == "choice":
        values = [item.get("value") for item in param.iterfind("i:option", NS)]
        assert tuple(values) == option.choices and values[0] == option.default
    elif option.kind == "bool":
        assert param.get("type") == "bool" and text == str(option.default).lower()
    elif option.kind == "layers":
        assert parse_layers(text) == make_config("standard").layers
    else:
        assert param.get("type") == "int"
        expected = option.default if option.default is not None else preset_value(option.name)
        assert int(text) == expected
        # Hidden step overrides use 0 for "the preset's"; every other minimum is the table's.
        minimum = 0 if option.name in ("iterations", "row_steps") else option.minimum
        assert (int(param.get("min")), int(param.get("max"))) == (minimum, option.maximum)


def test_the_extension_parses_its_dialog_like_the_table(monkeypatch):
    from clipascene_ext.effects import SketchImage

    effect = SketchImage()
    pars = effect.arg_parser
    defaults = {name: pars.get_default(name) for name in ("preset", "layers", "rows", "strokes",
                                                          "split", "seed", "iterations", "row_steps")}
    params = inx_params()
    for name, value in defaults.items():
        assert str(value).lower() == inx_default(params[name]).lower(), name
    effect.options = pars.parse_args(["--layers", " 3, 9,11 ", "--strokes", "12", "--seed", "7"])
    sent = effect.job_params()
    assert sent["layers"] == list(parse_layers(" 3, 9,11 "))
    # What the extension sends is valid for the API and means what the CLI means.
    api = JobParams(**sent).to_config("cpu")
    cli = config_from_args(build_parser().parse_args(
        ["sketch", "x.png", "--out", "o", "--layers", "3,9,11", "--strokes", "12", "--seed", "7"]),
        "cpu")
    assert (api.layers, api.strokes, api.seeds, api.preset) == (cli.layers, cli.strokes, cli.seeds,
                                                                 cli.preset)


@pytest.mark.parametrize("option", [o for o in OPTIONS if o.kind == "int"], ids=lambda o: o.name)
def test_cli_api_and_engine_share_the_limits(option):
    too_big = option.maximum + 1
    with pytest.raises(ValueError):
        JobParams(**{option.name: too_big})
    args = build_parser().parse_args(["sketch", "x.png", "--out", "o", option.flag, str(too_big)])
    with pytest.raises(ConfigError, match=option.flag):
        config_from_args(args, "cpu")
    with pytest.raises(ConfigError, match=option.flag):
        config_from_options({option.name: too_big})
