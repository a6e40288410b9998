"""Recording a model's dataflow graph by running it once on meta tensors.

Expanded weights walk the dataflow between two layers, so they need the graph, not just the
modules: concatenations, residual additions and the ``F.pad`` calls a model makes in ``forward``
all change how one layer's kernel sits on another's pixels. Symbolic tracing (torch.fx) cannot
follow forwards that compute padding from input shapes (TensorFlow "SAME" padding), so the graph
is recorded from a real forward instead: layer modules through forward hooks, everything else
through a ``TorchFunctionMode``. The forward runs on the ``meta`` device (shapes only, no
arithmetic, the model's own weights untouched); models that cannot run on meta tensors are run
once on a zero image instead.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from circuits_vision.hooks import eval_mode, model_input_size, probe_input


@dataclass(eq=False)
class Node:
    """One recorded call. ``args``/``kwargs`` hold :class:`Node` where the call read a recorded tensor.

    ``op``: ``"module"`` (a layer; ``module`` and its name ``target``),
    ``"function"`` (a torch function or tensor method; ``target`` its name), or ``"item"`` (element
    ``target`` of a function's tuple output).
    """

    op: str
    target: object
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)
    module: nn.Module | None = None
    shape: tuple[int, ...] | None = None
    users: list[Node] = field(default_factory=list)

    @property
    def inputs(self) -> list[Node]:
        return [value for value in _flatten((self.args, self.kwargs)) if isinstance(value, Node)]

    @property
    def channels(self) -> int:
        if self.shape is None or len(self.shape) < 2:
            raise ValueError(f"{self.describe()} does not output an [N, C, H, W] tensor")
        return self.shape[1]

    def describe(self) -> str:
        if self.op == "module":
            return f"layer '{self.target}' ({type(self.module).__name__})"
        if self.op == "function":
            return f"torch function/method '{self.target}'"
        return f"{self.op} {self.target!r}"


@dataclass
class Graph:
    """Recorded nodes in execution order, and each named module's output node(s)."""

    nodes: list[Node]
    module_outputs: dict[str, list[Node]]

    def output_of(self, name: str, role: str, missing: str) -> Node:
        found = self.module_outputs.get(name, [])
        if not found:
            raise ValueError(missing)
        if len(found) > 1:
            raise ValueError(
                f"{role} layer '{name}' is called {len(found)} times in forward (shared weights), so its output is "
                "ambiguous; pick a layer that runs once"
            )
        return found[0]


def record(model: nn.Module, stop_after: nn.Module, is_leaf) -> Graph:
    """Run ``model`` once, recording calls up to the output of ``stop_after``.

    ``is_leaf(module) -> bool``: modules recorded as one node (their insides are not recorded).
    """
    size = model_input_size(model)
    with eval_mode(model), torch.no_grad():
        example = probe_input(model, size)
        try:
            tensors = itertools.chain(
                model.named_parameters(remove_duplicate=False), model.named_buffers(remove_duplicate=False)
            )
            params, originals = {}, {}
            for name, tensor in tensors:
                params[name] = tensor.to("meta")
                originals[id(params[name])] = tensor
            return _Recorder(model, stop_after, is_leaf, originals).run(
                lambda: torch.func.functional_call(model, params, (example.to("meta"),), strict=False)
            )
        except (RuntimeError, NotImplementedError, TypeError, ValueError):
            # some forwards mix in tensors that are no parameters or buffers: run for real instead
            return _Recorder(model, stop_after, is_leaf).run(lambda: model(example))


class _StopForward(Exception):
    pass


class _Recorder(TorchFunctionMode):
    def __init__(
        self, model: nn.Module, stop_after: nn.Module, is_leaf, originals: dict[int, torch.Tensor] | None = None
    ) -> None:
        super().__init__()
        self.model, self.stop_after, self.is_leaf = model, stop_after, is_leaf
        # id of a parameter's meta copy -> the parameter: a node's arguments hold the real tensor, so rules
        # can read a parameter that the forward uses directly (a layer scale), not only a module's
        self.originals = originals or {}
        self.nodes: list[Node] = []
        self.module_outputs: dict[str, list[Node]] = {}
        self.node_of: dict[int, Node] = {}  # id(tensor) -> node that produced it
        self.alive: list[object] = []  # keeps recorded tensors alive so their ids stay unique
        self.leaf_depth = 0

    def run(self, forward) -> Graph:
        handles = []
        try:
            for name, module in self.model.named_modules():
                if module is self.model:
                    continue
                handles.append(module.register_forward_pre_hook(self._enter(module)))
                handles.append(module.register_forward_hook(self._exit(name, module)))
            with self:
                try:
                    forward()
                except _StopForward:
                    pass
        finally:
            for handle in handles:
                handle.remove()
        return Graph(self.nodes, self.module_outputs)

    # -- modules ----------------------------------------------------------------------------------
    def _enter(self, module: nn.Module):
        def pre_hook(mod, args):
            if self.is_leaf(module):
                self.leaf_depth += 1

        return pre_hook

    def _exit(self, name: str, module: nn.Module):
        def hook(mod, args, output):
            leaf = self.is_leaf(module)
            if leaf:
                self.leaf_depth -= 1
            if self.leaf_depth == 0:
                if leaf:
                    self._bind(Node("module", name, self._to_nodes(args), {}, module), output)
                if isinstance(output, torch.Tensor) and id(output) in self.node_of:
                    self.module_outputs.setdefault(name, []).append(self.node_of[id(output)])
            if module is self.stop_after:
                raise _StopForward

        return hook

    # -- functions --------------------------------------------------------------------------------
    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        output = _shape_only(func, args, kwargs)
        if output is None:
            output = func(*args, **kwargs)
        if self.leaf_depth == 0:
            self._record_function(func, args, kwargs, output)
        return output

    def _record_function(self, func, args, kwargs, output) -> None:
        inputs_recorded = any(id(v) in self.node_of for v in _flatten((args, kwargs)) if isinstance(v, torch.Tensor))
        name = getattr(func, "__name__", repr(func))
        if output is None and args and isinstance(args[0], torch.Tensor) and inputs_recorded:
            output = args[0]  # an in-place call returning None (e.g. __setitem__) changed its first argument
        if not any(isinstance(v, torch.Tensor) for v in _flatten(output)):
            return
        node = Node("function", name, self._to_nodes(args), self._to_nodes(kwargs))
        if isinstance(output, torch.Tensor):
            self._bind(node, output)
            return
        self._bind(node, None)
        for index, item in enumerate(_flatten(output)):
            if isinstance(item, torch.Tensor):
                self._bind(Node("item", index, (node,)), item)

    # -- bookkeeping ------------------------------------------------------------------------------
    def _bind(self, node: Node, output) -> None:
        for parent in node.inputs:
            parent.users.append(node)
        self.nodes.append(node)
        if isinstance(output, torch.Tensor):
            node.shape = tuple(output.shape)
            self.node_of[id(output)] = node
            self.alive.append(output)

    def _to_nodes(self, value):
        if isinstance(value, torch.Tensor):
            node = self.node_of.get(id(value))
            return node if node is not None else self.originals.get(id(value), value)
        if isinstance(value, (tuple, list)):
            return type(value)(self._to_nodes(v) for v in value)
        if isinstance(value, dict):
            return {k: self._to_nodes(v) for k, v in value.items()}
        return value


# ReLU on meta tensors runs through Python reference decompositions, which made it the largest cost of
# a recording; its output has its input's shape, so that is all a recording computes.
_RELUS = {torch.relu, torch.nn.functional.relu, torch.Tensor.relu}
_RELUS_IN_PLACE = {torch.relu_, torch.nn.functional.relu_, torch.Tensor.relu_}


def _shape_only(func, args, kwargs) -> torch.Tensor | None:
    """The output of a ReLU on a meta tensor without running it; ``None`` for anything else."""
    x = args[0] if args else kwargs.get("input")
    if not isinstance(x, torch.Tensor) or not x.is_meta:
        return None
    inplace = kwargs.get("inplace", args[1] if len(args) > 1 else False)
    if func in _RELUS_IN_PLACE or (func is torch.nn.functional.relu and inplace):
        return x
    if func in _RELUS:
        return torch.empty_like(x)
    return None


def _flatten(value) -> list:
    if isinstance(value, (tuple, list)):
        return [leaf for v in value for leaf in _flatten(v)]
    if isinstance(value, dict):
        return [leaf for v in value.values() for leaf in _flatten(v)]
    return [value]


def _reachable(node: Node, edges: str) -> set[Node]:
    """``node`` and every node reached by following the ``edges`` attribute ("inputs" or "users")."""
    seen, stack = {node}, [node]
    while stack:
        for neighbour in getattr(stack.pop(), edges):
            if neighbour not in seen:
                seen.add(neighbour)
                stack.append(neighbour)
    return seen


def ancestors(node: Node) -> set[Node]:
    """``node`` and every node it (transitively) reads."""
    return _reachable(node, "inputs")


def descendants(node: Node) -> set[Node]:
    """``node`` and every node that (transitively) reads it."""
    return _reachable(node, "users")
