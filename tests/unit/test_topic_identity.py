"""A checkpoint remembers the Kafka topic id its offsets belong to (issue: a topic recreated under a checkpoint)."""
from __future__ import annotations

import pytest

from framework.consumer.progress import TOPIC_ID_FILE, check_topic_identity
from framework.errors import ConsumerError

OLD, NEW = "1f3c1a52-7d1b-4e0e-9f55-0a4e5b0c9d11", "8a2b6e0c-55a4-4a7d-b3a1-6c1d2e3f4a5b"


def _planned(checkpoint):
    (checkpoint / "offsets").mkdir(parents=True)
    (checkpoint / "offsets" / "0").write_text("v1\n{}\n{}\n")


def test_a_new_checkpoint_records_the_topic_id(tmp_path):
    checkpoint = tmp_path / "cp"
    check_topic_identity(checkpoint, "rec", OLD)
    assert (checkpoint / TOPIC_ID_FILE).read_text().strip() == OLD


def test_the_same_topic_passes_and_a_recreated_one_stops_with_the_remedy(tmp_path):
    checkpoint = tmp_path / "cp"
    check_topic_identity(checkpoint, "rec", OLD)
    _planned(checkpoint)
    check_topic_identity(checkpoint, "rec", OLD)
    with pytest.raises(ConsumerError) as err:
        check_topic_identity(checkpoint, "rec", NEW)
    message = str(err.value)
    assert message.count(".") >= 1 and "\n" not in message
    assert "'rec' was deleted and recreated" in message and OLD in message and NEW in message
    assert f"delete {checkpoint}" in message
    assert (checkpoint / TOPIC_ID_FILE).read_text().strip() == OLD  # nothing changed by the refusal


def test_a_checkpoint_that_never_planned_a_batch_takes_the_new_id(tmp_path):
    checkpoint = tmp_path / "cp"
    check_topic_identity(checkpoint, "rec", OLD)
    check_topic_identity(checkpoint, "rec", NEW)  # nothing was read under the old id
    assert (checkpoint / TOPIC_ID_FILE).read_text().strip() == NEW


def test_a_checkpoint_of_an_earlier_version_learns_the_id_and_no_id_checks_nothing(tmp_path):
    checkpoint = tmp_path / "cp"
    _planned(checkpoint)
    check_topic_identity(checkpoint, "rec", None)
    assert not (checkpoint / TOPIC_ID_FILE).exists()
    check_topic_identity(checkpoint, "rec", OLD)
    assert (checkpoint / TOPIC_ID_FILE).read_text().strip() == OLD
