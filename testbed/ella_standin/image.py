"""The running image of the ELLA stand-in (test double): build info, chain and labels."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

from ella_standin.buildinfo import BuildInfo, load_build_info
from ella_standin.migrations import Migration, chain_for

STANDIN_DESCRIPTION = "ELLA stand-in (test double)"


@dataclass(frozen=True)
class Image:
    info: BuildInfo
    chain: tuple[Migration, ...]
    path: str
    """Real path of the image file that is running."""

    @classmethod
    def load(cls) -> Image:
        info = load_build_info()
        return cls(
            info=info,
            chain=chain_for(info.version, info.fault),
            path=os.path.realpath(sys.argv[0]),
        )

    @property
    def version(self) -> str:
        return self.info.version

    @property
    def fault(self) -> str | None:
        return self.info.fault

    @property
    def head(self) -> str | None:
        return self.chain[-1].revision if self.chain else None

    def carries(self, revision: str) -> bool:
        return any(m.revision == revision for m in self.chain)

    def labels(self) -> dict[str, str]:
        """Labels as ``singularity inspect`` shows them, in a fixed order."""
        return {
            "org.label-schema.schema-version": "1.0",
            "org.label-schema.name": "ella",
            "org.label-schema.description": STANDIN_DESCRIPTION,
            "org.label-schema.version": self.version,
            "ella.fault": self.fault or "none",
            "ella.migration.head": self.head or "none",
            "ella.migration.chain": " ".join(m.revision for m in self.chain) or "none",
            "ella.build.source-sha256": self.info.source_sha256,
            "ella.build.tool": "testbed/build_standin.py",
        }
