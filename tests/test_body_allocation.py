"""Body parsers allocate only what the body holds: an ``.npy`` header or a
V2 tensor shape that declares more than the bytes present is a 4xx in the
protocol's error shape before anything of the declared size exists."""
import io
import json
import struct
import tracemalloc

import numpy as np
import pytest

from chalicelib.http.errors import ServiceError
from chalicelib.protocols import sagemaker
from tests.conftest import IRIS_ROWS, body_of

NPY = {"Content-Type": "application/x-npy"}


def npy_body(header_dict, data=b"", version=(1, 0)):
    """A hand-written ``.npy``: magic, a header literal, then ``data``."""
    header = repr(header_dict).encode("latin1")
    size_fmt = "<H" if version == (1, 0) else "<I"
    prefix = 8 + struct.calcsize(size_fmt)
    header += b" " * ((64 - (prefix + len(header) + 1) % 64) % 64) + b"\n"
    return (b"\x93NUMPY" + bytes(version) + struct.pack(size_fmt, len(header)) + header + data)


def npy(array):
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def post(api, body, headers=NPY, path="/invocations"):
    return api.client.http.post(path, headers=headers, body=body)


def test_128_byte_npy_declaring_2_to_the_36_elements_is_a_400(api):
    body = npy_body({"descr": "<f8", "fortran_order": False, "shape": (2 ** 36,)})
    assert len(body) == 128
    response = post(api, body)
    assert response.status_code == 400
    answer = body_of(response)
    assert "shape (68719476736,)" in answer["message"] and "0 bytes of data" in answer["message"]


def test_npy_header_is_checked_before_any_allocation():
    body = npy_body({"descr": "<f8", "fortran_order": False, "shape": (2 ** 20, 2 ** 20)})
    tracemalloc.start()
    try:
        with pytest.raises(ServiceError) as raised:
            sagemaker.npy_payload(body, max_rows=2 ** 21)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert raised.value.status == 400
    assert peak < 256 * 1024


@pytest.mark.parametrize("name, body, status, words", [
    ("truncated data", npy_body({"descr": "<f8", "fortran_order": False, "shape": (2, 4)},
                                b"\0" * 63), 400, "63 bytes"),
    ("trailing bytes", npy_body({"descr": "<f8", "fortran_order": False, "shape": (1, 4)},
                                b"\0" * 40), 400, "40 bytes"),
    ("zero-width text elements", npy_body({"descr": "<U0", "fortran_order": False,
                                           "shape": (1, 2 ** 40)}), 400, "<U0"),
    ("object elements", npy_body({"descr": "|O", "fortran_order": False, "shape": (1, 4)},
                                 b"\0" * 32), 400, "plain .npy"),
    ("structured elements", npy_body({"descr": [("a", "<f8")], "fortran_order": False,
                                      "shape": (1,)}, b"\0" * 8), 400, "plain .npy"),
    ("subarray elements", npy_body({"descr": ("<f8", (2 ** 20,)), "fortran_order": False,
                                    "shape": (1,)}), 400, "plain .npy"),
    ("complex elements", npy_body({"descr": "<c16", "fortran_order": False, "shape": (1, 4)},
                                  b"\0" * 64), 400, "<c16"),
    ("rows over the limit", npy_body({"descr": "|u1", "fortran_order": False,
                                      "shape": (20_000, 0)}), 413, "20000 rows"),
    ("three dimensions", npy_body({"descr": "<f8", "fortran_order": False,
                                   "shape": (2 ** 30, 2 ** 30, 2 ** 30)}), 400, "3 dimensions"),
    ("negative dimension", npy_body({"descr": "<f8", "fortran_order": False, "shape": (-1, 4)}),
     400, "readable"),
    ("header over the header limit", npy_body({"descr": "<f8", "fortran_order": False,
                                               "shape": (1, 4), "pad": "x" * 20_000},
                                              b"\0" * 32, (2, 0)), 400, "readable"),
    ("unknown format version", npy_body({"descr": "<f8", "fortran_order": False,
                                         "shape": (1, 4)}, b"\0" * 32, (3, 0)), 400,
     "readable"),
    ("two negative dimensions", npy_body({"descr": "<f8", "fortran_order": False,
                                          "shape": (-1, -4)}, b"\0" * 32), 400, "negative"),
    ("a bare magic", b"\x93NUMPY\x01\x00", 400, "readable"),
])
def test_hostile_npy_bodies_are_4xx(api, name, body, status, words):
    response = post(api, body)
    assert response.status_code == status, (name, body_of(response))
    assert words in body_of(response)["message"], name


def test_npy_in_fortran_order_and_both_header_versions_still_predict(api):
    rows = np.array(IRIS_ROWS)
    expected = body_of(post(api, npy(rows)))
    assert body_of(post(api, npy(np.asfortranarray(rows)))) == expected
    version_2 = npy_body({"descr": "<f8", "fortran_order": False, "shape": rows.shape},
                         rows.astype("<f8").tobytes(), (2, 0))
    assert body_of(post(api, version_2)) == expected


def test_v2_binary_tensor_declaring_2_to_the_40_rows_is_a_400(api):
    header = json.dumps({"inputs": [{"name": "x", "shape": [2 ** 40, 4], "datatype": "FP64",
                                     "parameters": {"binary_data_size": 32}}]}).encode()
    body = header + b"\0" * 32
    response = api.client.http.post(
        "/v2/models/iris-classifier/infer", body=body,
        headers={"Content-Type": "application/octet-stream",
                 "Inference-Header-Content-Length": str(len(header))})
    assert response.status_code == 400
    assert "32 bytes of binary data" in body_of(response)["error"]
