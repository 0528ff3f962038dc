"""Many images decided in one call (``gate verify IMAGE... --images FILE``): a release of 50 components is
one command. The images share one gate (trust, policies, engine, registry connections) and are decided
concurrently, a bounded number at a time; the same image named twice is decided once.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from attestation.errors import InputError
from attestation.limits import MiB, check_json_depth, load_json
from attestation.reference import InvalidReference, parse
from gate.decision import Decision, undecided
from gate.verify import Gate

MAX_IMAGES_FILE_BYTES = 4 * MiB
MAX_IMAGES = 1000
CONCURRENCY = 8


def images_of_document(doc: Any, where: str) -> list[str]:
    """The images of a list of strings, or of an ApplicationSnapshot (Conforma's shape:
    ``components[].containerImage``, also under ``spec`` as a Snapshot object has it)."""
    if isinstance(doc, dict):
        components = doc.get("components")
        if components is None and isinstance(doc.get("spec"), dict):
            components = doc["spec"].get("components")
        if not isinstance(components, list):
            raise InputError(f"{where}: expected a list of images or an ApplicationSnapshot with components")
        images = []
        for i, component in enumerate(components):
            image = component.get("containerImage") if isinstance(component, dict) else None
            if not isinstance(image, str) or not image:
                raise InputError(f"{where}: components[{i}].containerImage must be a non-empty string")
            images.append(image)
    elif isinstance(doc, list):
        images = doc
        for i, image in enumerate(images):
            if not isinstance(image, str) or not image:
                raise InputError(f"{where}: item {i} must be an image reference (a non-empty string)")
    else:
        raise InputError(f"{where}: expected a list of images or an ApplicationSnapshot with components")
    if not images:
        raise InputError(f"{where}: no images in it")
    if len(images) > MAX_IMAGES:
        raise InputError(f"{where}: {len(images)} images, the limit is {MAX_IMAGES}")
    return images


def read_images_file(path: str) -> list[str]:
    """``--images FILE``: JSON or YAML (a JSON file is read as JSON, anything else as YAML)."""
    where = f"--images {path}"
    try:
        size = Path(path).stat().st_size
        if size > MAX_IMAGES_FILE_BYTES:
            raise InputError(f"{where}: {size} bytes, the limit is {MAX_IMAGES_FILE_BYTES}")
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise InputError(f"{where}: not UTF-8 text") from None
    except OSError as err:
        raise InputError(f"{where}: cannot read ({err.strerror or err})") from None
    if path.endswith(".json"):
        doc = load_json(text, max_bytes=MAX_IMAGES_FILE_BYTES, what=where)
    else:
        import yaml

        try:
            doc = yaml.safe_load(text)
        except yaml.YAMLError as err:
            raise InputError(f"{where}: not valid YAML: {' '.join(str(err).split())}") from None
        check_json_depth(doc, what=where)
    return images_of_document(doc, where)


async def verify_many(gate: Gate, images: list[str], *, deadline: float) -> list[Decision]:
    """One decision per image, in the order given; an invalid reference is "could not decide" for that
    image alone."""
    sem = asyncio.Semaphore(CONCURRENCY)
    once: dict[str, asyncio.Future[Decision]] = {}

    async def one(image: str) -> Decision:
        try:
            parse(image)
        except InvalidReference as err:
            return undecided(image, [str(err)])
        async with sem:
            return await gate.verify(image, deadline=deadline)

    async with gate:
        for image in images:
            if image not in once:
                once[image] = asyncio.ensure_future(one(image))
        await asyncio.gather(*once.values())
    return [once[image].result() for image in images]
