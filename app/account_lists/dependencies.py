from typing import Annotated

from fastapi import Depends, Header

CSV_MEDIA_TYPE = "text/csv"


def csv_requested(
    accept: Annotated[
        str | None,
        Header(description="`text/csv` for the whole list as CSV; JSON pages otherwise."),
    ] = None,
) -> bool:
    """Return whether the Accept header prefers `text/csv` to JSON.

    CSV is chosen when `text/csv` is listed with a quality above 0 and at least as high as
    that of `application/json`, `application/*` or `*/*`; JSON is the default.
    """
    if accept is None:
        return False
    csv_quality = 0.0
    json_quality = 0.0
    for media_range in accept.split(","):
        media_type, *parameters = (part.strip() for part in media_range.split(";"))
        quality = _quality(parameters)
        media_type = media_type.lower()
        if media_type == CSV_MEDIA_TYPE:
            csv_quality = max(csv_quality, quality)
        elif media_type in ("application/json", "application/*", "*/*"):
            json_quality = max(json_quality, quality)
    return csv_quality > 0 and csv_quality >= json_quality


def _quality(parameters: list[str]) -> float:
    for name, _, value in (parameter.partition("=") for parameter in parameters):
        if name.strip().lower() == "q":
            try:
                return float(value)
            except ValueError:
                return 1.0
    return 1.0


CsvRequested = Annotated[bool, Depends(csv_requested)]
