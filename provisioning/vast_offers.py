"""Vast offer search: the /bundles/ query, GPU family names, and the CUDA check.

Vast names GPUs with their variant ("H100 SXM", "H100 PCIE", "H100 NVL", "A100 SXM4", "Tesla T4":
the GPU name constants in vast-ai/vast-cli vastai/data/query.py, taken from Vast's gpulist), and
the search matches `gpu_name` exactly. So `gpu: H100` asks for the family: the name itself, its
form-factor variants and the "Tesla " spelling, with `in` (docs.vast.ai search offers: `in` is
a documented operator on gpu_name); the answer is checked against the same family here too."""

from __future__ import annotations

import re
from typing import Any, Dict, List, Optional, Tuple

from .base import Offer, Resources

# Form factors Vast appends to a family name; a different product (A100X, RTX 4070 Ti, GH200)
# is never matched by its family.
_VARIANTS = ("SXM", "SXM2", "SXM4", "SXM5", "PCIE", "NVL")
_VENDOR_PREFIX = "TESLA"


def _norm(name: str) -> List[str]:
    return name.replace("_", " ").upper().split()


def gpu_candidates(want: str) -> List[str]:
    """`H100` -> H100, H100 SXM, H100 PCIE, H100 NVL, ...; `T4` -> T4, Tesla T4. A name that
    already carries a variant (`H100_SXM`) asks for that one only."""
    words = _norm(want)
    base = " ".join(words)
    if words and words[-1] in _VARIANTS:
        return [base]
    names = [base] + [f"{base} {v}" for v in _VARIANTS]
    if words and words[0] != _VENDOR_PREFIX:
        names += [f"Tesla {n}" for n in names]
    return names


def same_family(want: str, real: str) -> bool:
    w, r = _norm(want), _norm(real)
    if r and r[0] == _VENDOR_PREFIX and (not w or w[0] != _VENDOR_PREFIX):
        r = r[1:]
    if w and w[-1] in _VARIANTS:
        return w == r
    if r and r[-1] in _VARIANTS:
        r = r[:-1]
    return w == r


def image_cuda(image: str) -> Optional[Tuple[int, int]]:
    """The CUDA version an image's tag names (`pytorch/pytorch:2.4.0-cuda12.4-cudnn9-runtime`,
    `nvidia/cuda:12.1.0-devel`), or None when it says nothing (`pytorch/pytorch:latest`)."""
    tag = image.rsplit(":", 1)[1] if ":" in image.rsplit("/", 1)[-1] else ""
    m = re.search(r"cuda[-_]?(\d+)\.(\d+)", tag) or (re.match(r"(\d+)\.(\d+)", tag) if "nvidia/cuda" in image
                                                     else None)
    return (int(m.group(1)), int(m.group(2))) if m else None


def _version(value: Any) -> Optional[Tuple[int, int]]:
    m = re.match(r"(\d+)\.(\d+)", str(value or ""))
    return (int(m.group(1)), int(m.group(2))) if m else None


def offer_query(want: Resources) -> Dict[str, Any]:
    """The /bundles/ body (docs.vast.ai api-reference search offers; the official client's
    defaults verified/external/rentable/rented, vastai/api/offers.py)."""
    query: Dict[str, Any] = {
        "verified": {"eq": True}, "rentable": {"eq": True}, "rented": {"eq": False},
        "external": {"eq": False}, "num_gpus": {"eq": want.num_gpus},
        "reliability": {"gte": want.min_reliability}, "disk_space": {"gte": want.disk_gb},
        "direct_port_count": {"gte": 1},
        "order": [["dph_total", "asc"]], "type": "on-demand", "limit": 40,
        "allocated_storage": want.disk_gb,
    }
    if want.gpu:
        query["gpu_name"] = {"in": gpu_candidates(want.gpu)}
    if want.max_price is not None:
        query["dph_total"] = {"lte": want.max_price}
    cuda = image_cuda(want.image)
    if cuda:
        query["cuda_max_good"] = {"gte": float(f"{cuda[0]}.{cuda[1]}")}
    return query


def read_offers(body: Any, want: Resources, provider: str = "vast") -> List[Offer]:
    """Offers that really fit: the family asked for, and a driver new enough for the image
    where the offer states its `cuda_max_good` (an offer that says nothing is kept)."""
    cuda = image_cuda(want.image)
    out = []
    for o in (body or {}).get("offers") or []:
        name = str(o.get("gpu_name") or "?")
        if want.gpu and not same_family(want.gpu, name):
            continue
        driver = _version(o.get("cuda_max_good"))
        if cuda and driver and driver < cuda:
            continue
        out.append(Offer(provider=provider, id=str(o["id"]), gpu=name, num_gpus=int(o.get("num_gpus") or 0),
                         price_per_hour=float(o.get("dph_total") or 0), reliability=o.get("reliability"),
                         location=o.get("geolocation"), disk_gb=o.get("disk_space")))
    return sorted(out, key=lambda o: o.price_per_hour)
