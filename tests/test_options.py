"""Option validation against the real NodeODX `/options` reply, one case per domain kind."""
import json
from importlib import resources

import pytest

from shared.options import (
    OptionProblem,
    normalize_options,
    options_to_json,
    parse_options_field,
    validate_image_count,
    validate_options,
    validate_task,
)
from shared.types import NodeOption

REAL = json.loads(resources.files("shared").joinpath("data/nodeodx-options.json").read_text())


def problems(options):
    return {p.option: p.message for p in validate_options(REAL, options)}


def test_real_defaults_are_all_valid():
    defaults = {o["name"]: o["value"] for o in REAL}
    assert validate_options(REAL, defaults) == []


@pytest.mark.parametrize("name, good, bad, words", [
    ("min-num-features", "8000", "12.5", "whole number"),                 # integer
    ("matcher-neighbors", 8, -1, "zero or more"),                         # positive integer
    ("mesh-octree-depth", 14, 15, "between 1 and 14"),                    # integer: 1 <= x <= 14
    ("dem-resolution", "2.5", "abc", "number"),                           # float
    ("crop", 0, -3, "zero or more"),                                      # positive float
    ("orthophoto-resolution", 0.5, 0, "must be > 0.0"),                   # float > 0.0
    ("pc-quality", "high", "extreme", "not one of"),                      # enum list
    ("cameras", '{"a": 1}', "{not json", "expected JSON"),                # json
    ("fast-orthophoto", True, "maybe", "true or false"),                  # bool
])
def test_each_domain_kind(name, good, bad, words):
    assert problems({name: good}) == {}
    message = problems({name: bad})[name]
    assert words in message


def test_string_domain_accepts_anything():
    assert problems({"sm-cluster": "http://cluster:3000"}) == {}


def test_unknown_option_is_named_with_a_hint():
    message = problems({"orthophoto_resolution": 2})["orthophoto_resolution"]
    assert "unknown option" in message and "orthophoto-resolution" in message


def test_list_and_dict_forms_are_the_same():
    as_list = [{"name": "dsm", "value": True}, {"name": "pc-quality", "value": "low"}]
    assert normalize_options(as_list) == {"dsm": True, "pc-quality": "low"}
    assert json.loads(options_to_json({"dsm": True})) == [{"name": "dsm", "value": True}]


def test_malformed_options_field_is_explained():
    with pytest.raises(ValueError, match="not valid JSON"):
        parse_options_field("[{")
    with pytest.raises(ValueError, match="JSON list"):
        parse_options_field('"dsm"')
    assert validate_options(REAL, [{"value": 1}])[0].option == "options"


def test_image_count_limits():
    assert validate_image_count(1)[0].message.startswith("1 image(s) given")
    assert validate_image_count(0)[0].option == "images"
    assert validate_image_count(2) == []
    assert "at most 10" in validate_image_count(11, max_images=10)[0].message
    assert validate_image_count(10, max_images=10) == []


def test_validate_task_combines_everything():
    found = validate_task([NodeOption("dsm", "bool")], {"dsm": "x", "nope": 1}, 1)
    assert [p.option for p in found] == ["dsm", "nope", "images"]
    assert str(found[0]).startswith("dsm: ")
    assert isinstance(found[0], OptionProblem)
