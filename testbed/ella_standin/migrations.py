"""The stand-in's alembic-like migration chain, and which part of it an image carries.

Every migration has a 12-hex revision id, a parent (``down_revision``) and the
release that introduced it. An image of version V carries the migrations
introduced at or before V, so its head is the newest of those: 2.0.0 and 2.0.1
share a head, 2.1.0 has a newer one. The ``migration-fails`` fault appends one
more migration that does part of its work and then raises.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from ella_standin.buildinfo import Version, parse_version


class Cursor(Protocol):
    def execute(self, query: str, params: Sequence[Any] | None = None) -> Any: ...


class MigrationFailed(Exception):
    """Raised by the fault migration; the runner rolls its transaction back."""


@dataclass(frozen=True)
class Migration:
    revision: str
    down_revision: str | None
    introduced_in: str
    description: str
    upgrade: Callable[[Cursor], None]

    @property
    def introduced_version(self) -> Version:
        return parse_version(self.introduced_in)


def _baseline(cur: Cursor) -> None:
    cur.execute(
        """
        CREATE TABLE analysis (
            id serial PRIMARY KEY,
            name text NOT NULL UNIQUE,
            genepanel text NOT NULL,
            date_created timestamptz NOT NULL DEFAULT now()
        );
        CREATE TABLE alleleassessment (
            id serial PRIMARY KEY,
            analysis_id integer NOT NULL REFERENCES analysis (id),
            allele text NOT NULL,
            classification text NOT NULL,
            date_created timestamptz NOT NULL DEFAULT now()
        );
        CREATE TABLE interpretationlog (
            id serial PRIMARY KEY,
            analysis_id integer NOT NULL REFERENCES analysis (id),
            user_id integer NOT NULL,
            message text NOT NULL,
            date_created timestamptz NOT NULL DEFAULT now()
        );
        CREATE TABLE uiexception (
            id serial PRIMARY KEY,
            time timestamptz NOT NULL DEFAULT now(),
            user_id integer,
            message text,
            location text,
            stacktrace text
        );
        CREATE TABLE broadcast (
            id serial PRIMARY KEY,
            date_created timestamptz NOT NULL DEFAULT now(),
            message text NOT NULL,
            active boolean NOT NULL DEFAULT true
        );
        CREATE TABLE usergroup (
            id serial PRIMARY KEY,
            name text NOT NULL UNIQUE,
            config jsonb NOT NULL DEFAULT '{}'::jsonb
        );
        CREATE TABLE filterconfig (
            id serial PRIMARY KEY,
            name text NOT NULL UNIQUE,
            filterconfig jsonb NOT NULL,
            active boolean NOT NULL DEFAULT true
        );
        """
    )


def _analysis_priority_and_evaluation(cur: Cursor) -> None:
    cur.execute(
        """
        ALTER TABLE analysis ADD COLUMN priority integer NOT NULL DEFAULT 1;
        ALTER TABLE alleleassessment ADD COLUMN evaluation jsonb;
        UPDATE alleleassessment
           SET evaluation = jsonb_build_object(
                   'classification', classification,
                   'backfilled_by', '8d3e5b71c0a2');
        CREATE INDEX ix_alleleassessment_analysis_id ON alleleassessment (analysis_id);
        """
    )


def _annotationshadow(cur: Cursor) -> None:
    cur.execute(
        """
        CREATE TABLE annotationshadow (
            allele text NOT NULL,
            frequency double precision
        );
        CREATE INDEX ix_annotationshadow_allele ON annotationshadow (allele);
        INSERT INTO annotationshadow (allele)
            SELECT DISTINCT allele FROM alleleassessment ORDER BY allele;
        ALTER TABLE interpretationlog ADD COLUMN review_comment text;
        """
    )


def _rename_frequency_and_version_evaluations(cur: Cursor) -> None:
    cur.execute(
        """
        ALTER TABLE annotationshadow RENAME COLUMN frequency TO gnomad_af;
        UPDATE alleleassessment
           SET evaluation = coalesce(evaluation, '{}'::jsonb)
                            || jsonb_build_object('schema_version', 3);
        """
    )


def _fail_halfway(cur: Cursor) -> None:
    cur.execute("ALTER TABLE analysis ADD COLUMN archived boolean NOT NULL DEFAULT false")
    cur.execute("UPDATE analysis SET archived = false")
    raise MigrationFailed("simulated failure halfway through (fault: migration-fails)")


CHAIN: tuple[Migration, ...] = (
    Migration("4f1c2a9e7b30", None, "2.0.0", "baseline", _baseline),
    Migration(
        "8d3e5b71c0a2",
        "4f1c2a9e7b30",
        "2.1.0",
        "analysis priority, backfilled alleleassessment evaluation",
        _analysis_priority_and_evaluation,
    ),
    Migration(
        "c27a9f04e6d1",
        "8d3e5b71c0a2",
        "2.2.0",
        "annotationshadow, interpretationlog review comment",
        _annotationshadow,
    ),
    Migration(
        "e95b0d38a4f7",
        "c27a9f04e6d1",
        "3.0.0",
        "rename annotationshadow frequency to gnomad_af, versioned evaluations",
        _rename_frequency_and_version_evaluations,
    ),
)
"""The released chain, oldest first. Append only; never edit a released entry."""

FAULT_REVISION = "f00dfa11c0de"
"""Revision id of the migration that the ``migration-fails`` fault appends."""


def chain_for(version: str, fault: str | None = None) -> tuple[Migration, ...]:
    """The migrations an image of ``version`` (built with ``fault``) carries, oldest first."""
    release = parse_version(version)
    chain = tuple(m for m in CHAIN if m.introduced_version <= release)
    if fault == "migration-fails":
        chain += (
            Migration(
                FAULT_REVISION,
                chain[-1].revision if chain else None,
                version,
                "injected failing migration",
                _fail_halfway,
            ),
        )
    return chain


def head_for(version: str, fault: str | None = None) -> str | None:
    """Head revision of an image of ``version``; None for a release before the baseline."""
    chain = chain_for(version, fault)
    return chain[-1].revision if chain else None
