"""The outlines of Paris's 20 arrondissements, drawn under the counters on the dashboard's map.

Shipped with the package (``arrondissements.geojson``, derived by
``scripts/derive_arrondissements.py`` from the Ville de Paris « Arrondissements » dataset, ODbL):
the map needs no tile server and no network. The file carries its licence and attribution; the
map's caption shows :data:`ATTRIBUTION_TEXT`.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

ARRONDISSEMENTS = Path(__file__).with_name("arrondissements.geojson")
ARRONDISSEMENTS_ATTRIBUTION = {
    "source": (
        "Ville de Paris, Paris Open Data, « Arrondissements » (arrondissements), "
        "https://opendata.paris.fr/explore/dataset/arrondissements/"
    ),
    "licence": "Open Database License (ODbL) v1.0, https://opendatacommons.org/licenses/odbl/1-0/",
    "attribution": "Contains information from Ville de Paris, made available under the ODbL.",
    "contents": (
        "the 20 municipal arrondissements: number, official and short names, a label point, and "
        "the outline (WGS 84 lon/lat, as thinned by the source) rounded to 4 decimals, exteriors "
        "wound clockwise"
    ),
    "derived_by": "scripts/derive_arrondissements.py",
}
ATTRIBUTION_TEXT = "Arrondissements: Ville de Paris, Paris Open Data, « Arrondissements » (ODbL)."

Feature = dict[str, Any]


@cache
def load_arrondissements() -> tuple[Feature, ...]:
    """The 20 arrondissements as GeoJSON features (read once per process), numbers 1 to 20.

    Each feature's properties: ``number``, ``name`` (official, e.g. Louvre), ``short_name``
    (1er Ardt), ``label_lon`` and ``label_lat`` (where its number is written).
    """
    collection = json.loads(ARRONDISSEMENTS.read_text(encoding="utf-8"))
    return tuple(collection["features"])
