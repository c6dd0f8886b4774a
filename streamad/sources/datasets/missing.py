"""The error of a video dataset that is not where the config says (UCSD, Avenue, ShanghaiTech), in one wording."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from streamad.errors import DataNotFoundError

__all__ = ["DatasetHelp"]


@dataclass(frozen=True)
class DatasetHelp:
    """How to put a dataset in place: what :meth:`missing` tells the user when the dataset is not found.

    Attributes:
        name: the dataset's name (``CUHK Avenue``).
        fix: how to put it under the data root and where to get it (sentences ending with a full stop);
            ``{placeholders}`` are filled by :meth:`missing`'s keyword arguments (``{folder}``).
    """

    name: str
    fix: str

    def missing(self, looked: Path, problem: str, **where: str) -> DataNotFoundError:
        """The :class:`~streamad.errors.DataNotFoundError` to raise: ``<name> not found: <problem> (looked in
        <looked, absolute>). The data root comes from $STREAMAD_DATA or the config's data_root; <fix>``.

        Args:
            looked: the folder that was looked in. problem: what is missing there (``no testing_videos folder``).
            **where: values of the placeholders in :attr:`fix`.
        """
        return DataNotFoundError(f"{self.name} not found: {problem} (looked in {looked.resolve()}). The data root "
                                 f"comes from $STREAMAD_DATA or the config's data_root; {self.fix.format(**where)}")
