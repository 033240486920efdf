"""Activation and logits memory of one forward/backward, counted tensor by tensor from what
autograd saves in HF's Llama code (RMSNorm, rotary attention, gated MLP, the fp32 loss), so
precision, LoRA, gradient checkpointing and the attention implementation each change the
count where the code does. Checked against peaks measured on the CPU (tests/cpu_peak.py)."""

from __future__ import annotations

from dataclasses import dataclass

from .shape import ModelShape

QKV = ("q_proj", "k_proj", "v_proj")
GATE_UP = ("gate_proj", "up_proj")


@dataclass(frozen=True)
class Kernels:
    """What differs between devices: a dropout mask is a bool tensor from CUDA's fused kernel,
    a scaled noise tensor in the input's dtype on the CPU."""
    mask_bytes_per_elem: float


CUDA = Kernels(mask_bytes_per_elem=1)


def cpu_kernels(p: int) -> Kernels:
    return Kernels(mask_bytes_per_elem=p)


@dataclass(frozen=True)
class ActivationPeak:
    """Bytes at the backward peak of one micro batch; `activations + logits` is the peak."""
    activations: int     # what blocks keep for backward, the recomputed block, short-lived grads
    logits: int          # the loss's fp32 log-probabilities and their gradients


def _adapted_input(shape: ModelShape, p: int, k: Kernels, modules, width: int) -> float:
    """Bytes per token saved for the inputs of adapted modules that share one input."""
    hit = [m for m in modules if m in shape.lora_modules]
    if not hit:
        return 0.0
    if shape.lora_dropout > 0:   # each adapter drops out its own copy, and keeps the mask
        return len(hit) * (p + k.mask_bytes_per_elem) * width
    return p * width             # lora_A keeps the shared input itself


def norm_bytes(shape: ModelShape, p: int, trainable: bool) -> float:
    """RMSNorm: the fp32 input (or its fp32 copy), and with a trainable weight the normalised
    input and the output (kept by the next Linear)."""
    h = shape.hidden
    return 4 * h + (2 * p * h if trainable else 0)


def attention_bytes(shape: ModelShape, p: int, seq: int) -> float:
    """Per token: q, k, v and the output kept by the kernel, plus eager's s x s weights."""
    h, kv, nh = shape.hidden, shape.kv_dim, shape.heads
    if shape.attn == "eager":
        # repeat_kv copies k and v to all heads; softmax keeps its fp32 output, and the
        # matmul with v keeps the copy cast back to the compute dtype.
        return 3 * p * h + p * h + nh * seq * (4 + (p if p != 4 else 0))
    return 2 * p * h + 2 * p * kv + 4 * nh   # q, out, k, v, log-sum-exp


def block_bytes(shape: ModelShape, p: int, seq: int, k: Kernels) -> float:
    """Bytes per token one decoder block keeps for its backward."""
    h, i = shape.hidden, shape.intermediate
    lora = bool(shape.lora_modules)
    total = 2 * norm_bytes(shape, p, trainable=not lora) + attention_bytes(shape, p, seq)
    mlp = (4 if shape.gated_mlp else 2) * p * i   # gate, act(gate), up, their product
    if not lora:
        return total + p * h + mlp                 # + o_proj's input
    mlp -= p * i                                   # the product is kept only by an adapter
    total += _adapted_input(shape, p, k, QKV, h) + _adapted_input(shape, p, k, ("o_proj",), h)
    total += _adapted_input(shape, p, k, GATE_UP, h) + _adapted_input(shape, p, k, ("down_proj",), i)
    total += p * shape.lora_rank * len(shape.lora_modules)   # lora_A outputs, kept by lora_B
    return total + mlp


def backward_inner(shape: ModelShape, p: int, seq: int) -> float:
    """Per token, what a block's backward adds on top of what it saved: the incoming gradient
    and the gradient of down_proj's input, or eager attention's s x s weight gradient (in the
    compute dtype, then fp32 for softmax's backward, and softmax's own)."""
    grads = p * shape.hidden + p * shape.intermediate
    if shape.attn == "eager":
        return max(grads, p * shape.hidden + shape.heads * seq * (8 + (p if p != 4 else 0)))
    return grads


def peak(shape: ModelShape, p: int, micro_batch: int, seq: int, checkpointing: bool,
         kernels: Kernels = CUDA) -> ActivationPeak:
    """The backward peak of one micro batch: at the loss's gradient (first in backward, every
    activation alive) or inside the last block's backward, whichever is larger."""
    tokens = micro_batch * seq
    block = block_bytes(shape, p, seq, kernels)
    # The loss upcasts logits to fp32: log_softmax's output, the nll gradient and the
    # log_softmax gradient are alive together (the loop drops the logits before backward).
    logits = 12 * shape.vocab
    at_loss = (norm_bytes(shape, p, trainable=not shape.lora_modules) + logits) * tokens
    # Inside a block, a weight's gradient exists whole before it is accumulated or bucketed.
    weight_grad = 0 if shape.lora_modules else p * shape.hidden * shape.intermediate
    if checkpointing:   # each block keeps only its inputs; one block is recomputed at a time
        mask = p * seq if shape.attn == "eager" else 0   # eager's s x s mask is one of the inputs
        base = (shape.layers * p * shape.hidden + mask) * tokens
        in_block = (block + backward_inner(shape, p, seq)) * tokens + weight_grad
    else:
        base = shape.layers * block * tokens
        in_block = backward_inner(shape, p, seq) * tokens + weight_grad
    total = base + max(at_loss, in_block)
    return ActivationPeak(activations=int(total - logits * tokens), logits=int(logits * tokens))
