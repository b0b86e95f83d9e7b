"""The model the lab's MLServer serves. This file runs inside MLServer's own venv (lab/peers.py), where
netaudit is not installed: the lab copies it next to model-settings.json, whose `implementation` names it.

Its predict is never reached by netaudit (probes only read); it exists so the model is real.
"""

from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.types import InferenceRequest, InferenceResponse


class HalfPlusTwo(MLModel):
    async def load(self) -> bool:
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        x = NumpyCodec.decode_input(payload.inputs[0])
        return InferenceResponse(model_name=self.name, outputs=[NumpyCodec.encode_output("y", x * 0.5 + 2)])
