"""Settings of the duplicate stream app, from STOKER_STREAM_* (docs/router.md lists them)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from stoker.core import topics


class StreamSettings(BaseSettings):
    """Where the Faust app reads and writes, how it batches, what it keeps."""

    model_config = SettingsConfigDict(env_prefix="STOKER_STREAM_", extra="ignore", frozen=True)

    app_id: str = Field(
        default="stoker-duplicates",
        min_length=1,
        description="Faust app id: the consumer group, the prefix of its internal topics "
        "and of its transactional ids",
    )
    pairs_topic: str = Field(default=topics.DUPLICATE_PAIRS, min_length=1)
    scores_topic: str = Field(default=topics.DUPLICATE_SCORES, min_length=1)
    dead_letter_topic: str = Field(default=topics.DEAD_LETTER, min_length=1)
    partitions: int = Field(
        default=4,
        ge=1,
        description="partitions of the pairs topic; the tables' changelogs get as many",
    )
    backend: str = Field(
        default="cpu",
        description="compile target of the model (cpu, cuda, neuron) or module:factory",
    )
    max_batch: int = Field(default=256, ge=1, description="records taken from the stream at once")
    within_s: float = Field(
        default=0.05, gt=0, description="longest wait for a batch to fill before it is scored"
    )
    max_queue_delay_ms: float = Field(default=5.0, ge=0, description="router batch fill wait")
    timeout_ms: float = Field(default=60_000.0, gt=0, description="deadline of a queued pair")
    score_retention_s: float = Field(
        default=7 * 86_400.0,
        gt=0,
        description="how long the scores table's changelog keeps a score (compact,delete); "
        "a repeat of an older pair is scored again after a worker restart",
    )
    window_s: float = Field(default=60.0, gt=0, description="tumbling window size")
    window_expires_s: float = Field(
        default=3_600.0, gt=0, description="how long closed windows stay readable"
    )
    duplicate_threshold: float = Field(
        default=0.5, ge=0, le=1, description="score at or above which a pair counts as duplicate"
    )
    web_host: str = Field(default="127.0.0.1", description="address of the web views")
    web_port: int = Field(default=6066, ge=1, le=65535, description="port of the web views")
    session_timeout_s: float = Field(
        default=10.0,
        ge=6,
        description="a worker silent this long (killed, hung) leaves the group and its "
        "partitions move to the others",
    )
    commit_interval_s: float = Field(
        default=0.5,
        gt=0,
        description="how often the Kafka transactions are committed (between batches, never "
        "inside one): what a read_committed consumer waits at most for a score",
    )
