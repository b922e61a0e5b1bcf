"""A labelled image folder in the ImageFolder layout, split into train and test deterministically.

    ROOT/<class>/<any sub-folders>/<image>

A class is an immediate sub-folder of ROOT (hidden folders skipped); its images are every
file with an image extension below it, in sorted relative-path order. Class indices follow
the sorted class names of the training folder. Files directly in ROOT belong to no class and
are counted, not used. Class folders without images are dropped and reported.

Splits:
- one folder (``test`` omitted or the same folder): the first ``train_per_class`` images of
  each class (sorted order) train, the rest test (at most ``test_per_class`` of them);
- two folders: ``train_per_class`` / ``test_per_class`` cap each side (first N, sorted);
  every test class must also be a training class.

Unreadable images are found later, when they are decoded; they are skipped and counted by
whoever decodes them.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path


class LabelledSetError(ValueError):
    """A labelled folder that cannot be used; the message says what is wrong and where."""


@dataclass(frozen=True)
class LabelledImage:
    path: str
    ref: str      # "<class>/<relative path>", unique within one folder
    label: int


@dataclass
class LabelledSplit:
    classes: list[str]
    train: list[LabelledImage]
    test: list[LabelledImage]
    train_root: str
    test_root: str
    rule: str
    notes: dict = field(default_factory=dict)

    def counts(self, which: str) -> dict[str, int]:
        items = self.train if which == "train" else self.test
        out = {c: 0 for c in self.classes}
        for it in items:
            out[self.classes[it.label]] += 1
        return out


# The image files a corruptor folder source reads (corruptor.sources.sources.IMAGE_EXTENSIONS;
# maa_train does not import corruptor, a test keeps the two equal).
IMAGE_EXTENSIONS: tuple[str, ...] = (
    ".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif", ".ppm", ".pgm",
)


def _image_extensions() -> tuple[str, ...]:
    return IMAGE_EXTENSIONS


def scan_classes(root: str | Path) -> tuple[dict[str, list[Path]], dict]:
    """{class: sorted image paths} of the non-empty classes, and notes (empty classes, stray files)."""
    root = Path(root)
    if not root.exists():
        raise LabelledSetError(f"{root} does not exist")
    if not root.is_dir():
        raise LabelledSetError(f"{root} is not a folder (expected ROOT/CLASS/IMAGE)")
    exts = _image_extensions()
    classes: dict[str, list[Path]] = {}
    empty, stray = [], 0
    for entry in sorted(root.iterdir(), key=lambda p: p.name):
        if entry.name.startswith("."):
            continue
        if not entry.is_dir():
            stray += entry.name.lower().endswith(exts)
            continue
        found = []
        for dirpath, dirnames, filenames in os.walk(entry, followlinks=True):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            found += [Path(dirpath) / fn for fn in filenames if fn.lower().endswith(exts) and not fn.startswith(".")]
        if found:
            classes[entry.name] = sorted(found, key=lambda p: p.relative_to(entry).as_posix())
        else:
            empty.append(entry.name)
    if not classes:
        raise LabelledSetError(f"{root} has no images in class sub-folders (expected ROOT/CLASS/IMAGE"
                               + (f"; {stray} image(s) lie directly in ROOT, outside any class" if stray else "")
                               + (f"; class folder(s) without images: {', '.join(empty)}" if empty else "") + ")")
    return classes, {"empty_classes": empty, "images_outside_classes": stray}


def _items(root: Path, cls: str, paths: list[Path], label: int) -> list[LabelledImage]:
    return [LabelledImage(str(p), f"{cls}/{p.relative_to(root / cls).as_posix()}", label) for p in paths]


def split(train_root: str | Path, test_root: str | Path | None = None, train_per_class: int | None = None,
          test_per_class: int | None = None) -> LabelledSplit:
    for name, value in (("train_per_class", train_per_class), ("test_per_class", test_per_class)):
        if value is not None and value < 1:
            raise LabelledSetError(f"{name} must be >= 1, got {value}")
    train_root = Path(train_root)
    same = test_root is None or Path(test_root).resolve() == train_root.resolve()
    train_classes, train_notes = scan_classes(train_root)
    names = sorted(train_classes)
    if len(names) < 2:
        raise LabelledSetError(f"{train_root} has {len(names)} class with images ({', '.join(names)}); "
                               "a classifier needs at least 2 classes")
    notes: dict = {"train": train_notes}
    train, test = [], []
    if same:
        if train_per_class is None:
            raise LabelledSetError("train and test are the same folder: give --train-per-class N (the first N "
                                   "images of each class train, the rest test)")
        no_test = []
        for label, cls in enumerate(names):
            paths = train_classes[cls]
            train += _items(train_root, cls, paths[:train_per_class], label)
            rest = paths[train_per_class:][:test_per_class]
            if not rest:
                no_test.append(cls)
            test += _items(train_root, cls, rest, label)
        notes["classes_without_test_images"] = no_test
        rule = (f"one folder: the first {train_per_class} images per class (sorted paths) train, the rest test"
                + (f" (at most {test_per_class} per class)" if test_per_class else ""))
        test_root = train_root
    else:
        test_root = Path(test_root)
        test_classes, test_notes = scan_classes(test_root)
        notes["test"] = test_notes
        unknown = sorted(set(test_classes) - set(names))
        if unknown:
            raise LabelledSetError(f"test classes not among the training classes of {train_root}: "
                                   f"{', '.join(unknown)} (a frozen probe can only predict classes it was fitted on)")
        for label, cls in enumerate(names):
            train += _items(train_root, cls, train_classes[cls][:train_per_class], label)
            test += _items(test_root, cls, test_classes.get(cls, [])[:test_per_class], label)
        caps = [f"{what} capped at the first {n} per class" for what, n in
                (("train", train_per_class), ("test", test_per_class)) if n]
        rule = "two folders" + (f" ({'; '.join(caps)}, sorted paths)" if caps else "")
    if not test:
        raise LabelledSetError(f"no test images: every image of {train_root} went to training "
                               f"(--train-per-class {train_per_class} is at least each class's size)")
    return LabelledSplit(names, train, test, str(train_root), str(test_root), rule, notes)
