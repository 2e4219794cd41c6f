"""Benchmark sizes: how much data is generated and how many requests are sent."""

from dataclasses import dataclass
from enum import StrEnum


class SizeName(StrEnum):
    SMOKE = "smoke"
    SMALL = "small"
    FULL = "full"


@dataclass(frozen=True)
class Size:
    """Counts for one benchmark size.

    The large tenant has `large_accounts` accounts and, on average, `responses_per_account`
    responses per account over 8 quarters. The growth tenant has a tenth of its accounts.
    """

    name: SizeName
    large_accounts: int
    responses_per_account: float
    small_tenants: int
    small_tenant_accounts: int
    ingest_accounts: int
    ingest_requests: int
    ingest_half_rate_seconds: float
    bulk_rows: int
    report_repeats: int
    # Whether an uncounted round of reports warms the caches first. At the full size the
    # data is far larger than PostgreSQL's default shared buffers, so a round warms little
    # and would add many minutes.
    report_warmup: bool = True

    @property
    def growth_accounts(self) -> int:
        return self.large_accounts // 10


SIZES = {
    SizeName.SMOKE: Size(
        name=SizeName.SMOKE,
        large_accounts=2_000,
        responses_per_account=5,
        small_tenants=3,
        small_tenant_accounts=50,
        ingest_accounts=100,
        ingest_requests=200,
        ingest_half_rate_seconds=1,
        bulk_rows=20_000,
        report_repeats=1,
    ),
    SizeName.SMALL: Size(
        name=SizeName.SMALL,
        large_accounts=100_000,
        responses_per_account=5,
        small_tenants=100,
        small_tenant_accounts=100,
        ingest_accounts=5_000,
        ingest_requests=4_000,
        ingest_half_rate_seconds=10,
        bulk_rows=200_000,
        report_repeats=5,
    ),
    SizeName.FULL: Size(
        name=SizeName.FULL,
        large_accounts=1_000_000,
        responses_per_account=5,
        small_tenants=100,
        small_tenant_accounts=200,
        ingest_accounts=20_000,
        ingest_requests=10_000,
        ingest_half_rate_seconds=20,
        bulk_rows=1_000_000,
        report_repeats=2,
        report_warmup=False,
    ),
}
