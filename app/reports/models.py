"""Per-quarter response state that database triggers keep exact at every commit.

The migration that creates these tables defines the triggers and the quarter grid
(`revcov_quarter_start`): three-month blocks in the tenant's time zone that start on its
fiscal-year start month. Reports read these rows instead of re-deriving each account's
bucket from its responses; the application never writes them.
"""

import uuid
from datetime import datetime

from sqlalchemy import DateTime, ForeignKey, Integer, SmallInteger, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.db.base import Base


class AccountQuarterScore(Base):
    """The figures every roll-up rule needs from one account's scored responses in a quarter.

    `account_id` is the account a response counted for before any merge moved it.
    `latest_score` is the newest response's score and `senior_score` the newest score of
    the most senior contact role. `scored_responses` counts the scored responses, and the
    other columns aggregate each respondent's newest response. Accounts without a scored
    response in the quarter have no row.
    """

    __tablename__ = "account_quarter_scores"

    tenant_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True
    )
    quarter_start: Mapped[datetime] = mapped_column(DateTime(timezone=True), primary_key=True)
    account_id: Mapped[int] = mapped_column(primary_key=True)
    latest_score: Mapped[int] = mapped_column(SmallInteger)
    senior_score: Mapped[int] = mapped_column(SmallInteger)
    respondents: Mapped[int] = mapped_column(Integer)
    score_sum: Mapped[int] = mapped_column(Integer)
    min_score: Mapped[int] = mapped_column(SmallInteger)
    promoters: Mapped[int] = mapped_column(Integer)
    detractors: Mapped[int] = mapped_column(Integer)
    scored_responses: Mapped[int] = mapped_column(Integer)


class RespondentQuarterScore(Base):
    """One respondent's newest score in one quarter, over all its scored responses.

    `respondent` is `email:` and the email key, or `response:` and the row id of a
    response without an email. The counts cover all of the respondent's scored responses
    in the quarter, and those matched to no account. `accounts` counts the distinct
    accounts (before any merge) of those responses.
    """

    __tablename__ = "respondent_quarter_scores"

    tenant_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True
    )
    quarter_start: Mapped[datetime] = mapped_column(DateTime(timezone=True), primary_key=True)
    respondent: Mapped[str] = mapped_column(Text, primary_key=True)
    latest_score: Mapped[int] = mapped_column(SmallInteger)
    scored_responses: Mapped[int] = mapped_column(Integer)
    unmatched_responses: Mapped[int] = mapped_column(Integer)
    accounts: Mapped[int] = mapped_column(Integer)
