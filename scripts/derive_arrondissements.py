"""Re-derive the shipped outlines of Paris's 20 arrondissements, drawn under the dashboard's map.

The dashboard draws ``src/bikecount/dashboard/arrondissements.geojson`` (no tile server, no
network). This script makes it from the Ville de Paris « Arrondissements » GeoJSON (by default the
copy in ``../shared/data/paris-arrondissements``): each arrondissement keeps its number and names,
its outline rounded to 4 decimals (about 10 m) without repeated points, wound clockwise as
Vega-Lite's projections expect, and a point inside it where its number is written. The licence
and attribution travel in the file itself.

    .venv/bin/python scripts/derive_arrondissements.py [--source FILE] [--output FILE]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from bikecount.dashboard.geography import ARRONDISSEMENTS, ARRONDISSEMENTS_ATTRIBUTION

DEFAULT_SOURCE = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
DEFAULT_SOURCE = DEFAULT_SOURCE / "paris-arrondissements" / "arrondissements.geojson"
DECIMALS = 4
Ring = list[list[float]]


def signed_area(ring: Ring) -> float:
    """Twice the ring's area in degrees², positive when it turns counter-clockwise."""
    return sum(x1 * y2 - x2 * y1 for (x1, y1), (x2, y2) in zip(ring, ring[1:], strict=False))


def clean_ring(ring: Ring, clockwise: bool) -> Ring:
    """Rounded, without repeated consecutive points, closed, and wound as asked.

    d3-geo (under Vega-Lite) reads a counter-clockwise exterior ring as the whole globe but
    that polygon, which would zoom the fitted map out to the Earth: exteriors turn clockwise.
    """
    points: Ring = []
    for lon, lat in ring:
        point = [round(lon, DECIMALS), round(lat, DECIMALS)]
        if not points or point != points[-1]:
            points.append(point)
    if points[0] != points[-1]:
        points.append(points[0])
    if (signed_area(points) < 0) != clockwise:
        points.reverse()
    return points


def label_point(ring: Ring) -> tuple[float, float]:
    """The ring's centroid (area-weighted): where the arrondissement's number is written."""
    twice_area = signed_area(ring)
    cx = cy = 0.0
    for (x1, y1), (x2, y2) in zip(ring, ring[1:], strict=False):
        cross = x1 * y2 - x2 * y1
        cx += (x1 + x2) * cross
        cy += (y1 + y2) * cross
    return round(cx / (3 * twice_area), DECIMALS), round(cy / (3 * twice_area), DECIMALS)


def derive_feature(feature: dict) -> dict:
    """One arrondissement: number, names, label point and outline (holes kept, if any)."""
    geometry = feature["geometry"]
    polygons = (
        [geometry["coordinates"]] if geometry["type"] == "Polygon" else geometry["coordinates"]
    )
    cleaned = [
        [clean_ring(ring, clockwise=index == 0) for index, ring in enumerate(polygon)]
        for polygon in polygons
    ]
    largest = max(cleaned, key=lambda polygon: abs(signed_area(polygon[0])))
    lon, lat = label_point(largest[0])
    properties = feature["properties"]
    return {
        "type": "Feature",
        "properties": {
            "number": int(properties["c_ar"]),
            "name": str(properties["l_aroff"]),
            "short_name": str(properties["l_ar"]),
            "label_lon": lon,
            "label_lat": lat,
        },
        "geometry": (
            {"type": "Polygon", "coordinates": cleaned[0]}
            if len(cleaned) == 1
            else {"type": "MultiPolygon", "coordinates": cleaned}
        ),
    }


def outer_rings(feature: dict) -> list[Ring]:
    geometry = feature["geometry"]
    if geometry["type"] == "Polygon":
        return [geometry["coordinates"][0]]
    return [polygon[0] for polygon in geometry["coordinates"]]


def format_collection(features: list[dict]) -> str:
    """The attribution first, then one arrondissement a line: short enough to review in a diff."""
    head = json.dumps(ARRONDISSEMENTS_ATTRIBUTION, ensure_ascii=False, indent=1)[:-2]
    rows = ",\n".join(
        "  " + json.dumps(feature, ensure_ascii=False, separators=(",", ":"))
        for feature in features
    )
    return f'{head},\n "type": "FeatureCollection",\n "features": [\n{rows}\n ]\n}}\n'


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE)
    parser.add_argument("--output", type=Path, default=ARRONDISSEMENTS)
    args = parser.parse_args()
    source = json.loads(args.source.read_text(encoding="utf-8"))
    features = sorted(
        (derive_feature(feature) for feature in source["features"]),
        key=lambda feature: feature["properties"]["number"],
    )
    args.output.write_text(format_collection(features), encoding="utf-8")
    points = sum(len(ring) for feature in features for ring in outer_rings(feature))
    size = args.output.stat().st_size / 1000
    print(f"{len(features)} arrondissements, {points} points, {size:.0f} KB: {args.output}")


if __name__ == "__main__":
    main()
