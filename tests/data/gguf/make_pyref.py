#!/usr/bin/env python3
"""Writes tests/data/gguf/pyref.gguf with the gguf-py reference writer: every
scalar value type, string/float/bool arrays, a nested array, alignment 64 and
tensors of a few types. tests/gguf/test_gguf.c checks the values read back.
Run from the repo root: python3 tests/data/gguf/make_pyref.py"""
import numpy as np
from gguf import GGUFWriter, GGUFValueType as T, GGMLQuantizationType as Q

w = GGUFWriter("tests/data/gguf/pyref.gguf", "llama")
w.add_custom_alignment(64)
w.add_key_value("t.u8", 250, T.UINT8)
w.add_key_value("t.i8", -120, T.INT8)
w.add_key_value("t.u16", 65000, T.UINT16)
w.add_key_value("t.i16", -32000, T.INT16)
w.add_key_value("t.u32", 4294967295, T.UINT32)
w.add_key_value("t.i32", -2147483648, T.INT32)
w.add_key_value("t.u64", 1 << 50, T.UINT64)
w.add_key_value("t.i64", -(1 << 50), T.INT64)
w.add_key_value("t.f32", 0.5, T.FLOAT32)
w.add_key_value("t.f64", 1.0 / 3.0, T.FLOAT64)
w.add_key_value("t.bool", False, T.BOOL)
w.add_key_value("t.str", "h\u00e9llo", T.STRING)
w.add_array("t.tokens", [f"tok{i}" for i in range(1000)])
w.add_array("t.scores", [float(-i) for i in range(1000)])
w.add_array("t.nested", [[1, 2], [3, 4, 5]])
w.add_array("t.bools", [False, True, True])
w.add_tensor("w.f32", np.arange(24, dtype=np.float32).reshape(3, 8))
w.add_tensor("w.q8_0", np.arange(4 * 34, dtype=np.uint8).reshape(2, 68), raw_dtype=Q.Q8_0)
w.add_tensor("w.f16", np.ones((2, 3, 4), dtype=np.float16))
w.write_header_to_file()
w.write_kv_data_to_file()
w.write_tensors_to_file()
w.close()
