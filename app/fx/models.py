import uuid
from datetime import datetime
from decimal import Decimal

from sqlalchemy import CheckConstraint, DateTime, ForeignKey, Numeric, String, func
from sqlalchemy.orm import Mapped, mapped_column

from app.db.base import Base

# Rates below 10^9 with up to 12 decimal places, as `app.fx.schemas` accepts them.
RATE = Numeric(21, 12)


class FxRate(Base):
    """A tenant-supplied exchange rate: `rate` units of `quote_currency` per unit of `currency`,
    in force from `effective_at` until the next rate of the same pair.

    `quote_currency` is the tenant's reporting currency when the rate was stored. Reports
    use only rates quoted in the current reporting currency, so rates stored before a change
    of reporting currency stay in the table but no longer apply.
    """

    __tablename__ = "fx_rates"

    tenant_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True
    )
    quote_currency: Mapped[str] = mapped_column(String(3), primary_key=True)
    currency: Mapped[str] = mapped_column(String(3), primary_key=True)
    effective_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), primary_key=True)
    rate: Mapped[Decimal] = mapped_column(RATE)
    recorded_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )

    __table_args__ = (
        CheckConstraint("rate > 0", name="rate_positive"),
        CheckConstraint("currency <> quote_currency", name="currency_not_quote_currency"),
    )
