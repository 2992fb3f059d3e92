from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from framework.core.config import Config, load_config
from framework.core.errors import ConfigError
from framework.lake.tables import Lakehouse

CONF = Path(__file__).resolve().parents[1] / "conf"


def test_local_toml_documents_exactly_the_defaults() -> None:
    loaded = load_config(CONF / "local.toml")
    assert dataclasses.replace(loaded, source="<defaults>") == Config()


def test_databricks_toml_uses_unity_catalog_names_and_no_local_paths() -> None:
    lake = Lakehouse(load_config(CONF / "databricks.toml").lakehouse)
    assert lake.is_catalog
    assert str(lake.table("silver.orders")) == "`main`.`silver`.`orders`"
    assert lake.framework_table("ledger").path is None
    assert lake.landing_path("orders").startswith("/Volumes/")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[spark]\nmaster = 4\n", "'spark.master' in {} must be a string"),
        ("[sparks]\n", "unknown config section 'sparks' in {}"),
        ("[run]\nfail_fast = 'yes'\n", "'run.fail_fast' in {} must be true or false"),
        ("[spark]\nshuffle_partitions = 0\n", "'spark.shuffle_partitions' in {} must be >= 1"),
        ("[spark\n", "invalid TOML in {}"),
    ],
)
def test_bad_values_name_the_key_and_the_file(tmp_path, text, message) -> None:
    path = tmp_path / "c.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert message.format(path) in str(error.value)
