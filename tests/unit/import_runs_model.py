"""A model module that (wrongly) starts a producer when imported: the model process must not publish."""
from __future__ import annotations

from framework.producer.simulation import SimulationProducerABC
from framework.sources import model_process
from framework.testing.producer import InMemoryKafka
from tests.unit.process_models import DrawModel


class ImportRunsModel(DrawModel):
    pass


class ImportRunsSim(SimulationProducerABC):
    name = "unit-import-runs-sim"
    model = ImportRunsModel
    topic = "import-runs"


if model_process.IN_MODEL_PROCESS:  # only in the child: a test process importing this must not run anything
    ImportRunsSim(**InMemoryKafka().clients()).run()
