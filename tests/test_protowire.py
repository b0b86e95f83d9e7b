"""The scanner's own protobuf decoding must read exactly what TensorFlow's real messages encode."""

from __future__ import annotations

import pytest
from google.protobuf.message import DecodeError as ProtobufDecodeError

from netaudit.transport import protowire
from netaudit.transport.safety import MALFORMED
from netaudit.probes.tf_runtime.grpc import decode_devices


def test_device_list_decodes_byte_for_byte_like_tensorflow():
    from tensorflow.core.framework.device_attributes_pb2 import DeviceAttributes

    devices = [DeviceAttributes(name="/job:ps/replica:0/task:3/device:CPU:0", device_type="CPU",
                                memory_limit=268435456, incarnation=0xFFEEDDCCBBAA9988,
                                physical_device_desc="device: 0, name: lab"),
               DeviceAttributes(name="/job:worker/replica:0/task:1/device:GPU:1", device_type="GPU",
                                memory_limit=-1, incarnation=7)]
    # GetStatusResponse is `repeated DeviceAttributes device_attributes = 1` (worker.proto).
    body = b"".join(protowire.field(1, d.SerializeToString()) for d in devices)
    got = decode_devices(body)
    assert [(d["job"], d["task"], d["device_type"], d["memory_limit"], d["incarnation"], d["physical_device_desc"])
            for d in got] == [("ps", 3, "CPU", 268435456, 0xFFEEDDCCBBAA9988, "device: 0, name: lab"),
                              ("worker", 1, "GPU", -1, 7, "")]


def test_encoded_fields_parse_in_real_protobuf():
    from tensorflow.core.framework.device_attributes_pb2 import DeviceAttributes

    parsed = DeviceAttributes.FromString(protowire.field(1, "/job:a/replica:0/task:0/device:CPU:0")
                                         + protowire.field(4, 1 << 40))
    assert parsed.name.endswith("CPU:0") and parsed.memory_limit == 1 << 40


@pytest.mark.parametrize("message", ["device", "model_status", "reload", "metadata"])
def test_malformed_payload_is_unparseable_for_any_message(message):
    from tensorflow.core.framework.device_attributes_pb2 import DeviceAttributes
    from tensorflow_serving.apis import get_model_metadata_pb2, get_model_status_pb2, model_management_pb2

    cls = {"device": DeviceAttributes, "model_status": get_model_status_pb2.GetModelStatusRequest,
           "reload": model_management_pb2.ReloadConfigRequest,
           "metadata": get_model_metadata_pb2.GetModelMetadataRequest}[message]
    with pytest.raises(ProtobufDecodeError):
        cls.FromString(MALFORMED)
    with pytest.raises(protowire.DecodeError):
        protowire.decode(MALFORMED)


def test_truncated_and_negative_values():
    with pytest.raises(protowire.DecodeError):
        protowire.decode(b"\x0a\x05ab")
    assert protowire.decode(protowire.field(2, -1)).signed(2) == -1
