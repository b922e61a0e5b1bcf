"""Small read-only views of an ONNX graph: initializers, producers, consumers, constants."""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import numpy_helper


@dataclass
class GraphView:
    model: onnx.ModelProto
    inits: dict[str, np.ndarray] = field(init=False)
    producer: dict[str, onnx.NodeProto] = field(init=False)
    consumers: dict[str, list[onnx.NodeProto]] = field(init=False)
    constants: dict[str, np.ndarray] = field(init=False)

    def __post_init__(self) -> None:
        g = self.model.graph
        self.inits = {t.name: numpy_helper.to_array(t) for t in g.initializer}
        self.producer, self.consumers, self.constants = {}, defaultdict(list), {}
        for node in g.node:
            for out in node.output:
                self.producer[out] = node
            for inp in node.input:
                if inp:
                    self.consumers[inp].append(node)
            if node.op_type == "Constant":
                for a in node.attribute:
                    if a.name == "value":
                        self.constants[node.output[0]] = numpy_helper.to_array(a.t)

    def value(self, name: str) -> np.ndarray | None:
        """The value of a tensor that is known without running the graph (initializer or Constant)."""
        if name in self.inits:
            return self.inits[name]
        return self.constants.get(name)

    def consumers_of(self, name: str, op_type: str | None = None) -> list[onnx.NodeProto]:
        return [n for n in self.consumers.get(name, []) if op_type is None or n.op_type == op_type]

    def nodes(self, op_type: str) -> list[onnx.NodeProto]:
        return [n for n in self.model.graph.node if n.op_type == op_type]


def attr(node: onnx.NodeProto, name: str, default=None):
    for a in node.attribute:
        if a.name == name:
            v = onnx.helper.get_attribute_value(a)
            return v.decode() if isinstance(v, bytes) else v
    return default
