from typing import Annotated

from fastapi import Depends, Header

CSV_MEDIA_TYPE = "text/csv"


def csv_requested(
    accept: Annotated[
        str | None,
        Header(description="`text/csv` for the whole list as CSV; JSON pages otherwise."),
    ] = None,
) -> bool:
    """Return whether the Accept header lists `text/csv` with a quality above 0."""
    if accept is None:
        return False
    for media_range in accept.split(","):
        media_type, *parameters = (part.strip() for part in media_range.split(";"))
        if media_type.lower() != CSV_MEDIA_TYPE:
            continue
        quality = next(
            (value for name, _, value in (p.partition("=") for p in parameters) if name == "q"),
            "1",
        )
        try:
            return float(quality) > 0
        except ValueError:
            return True
    return False


CsvRequested = Annotated[bool, Depends(csv_requested)]
