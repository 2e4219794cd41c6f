from app.errors import UnprocessableError


class MissingFxRateError(UnprocessableError):
    code = "missing-fx-rate"
    title = "Missing exchange rate"


class ReportingCurrencyRateError(UnprocessableError):
    code = "reporting-currency-rate"
