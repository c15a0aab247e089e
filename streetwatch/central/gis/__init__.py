"""GIS: coordinate systems of base maps, GeoJSON out (RFC 7946) and vector base maps in."""
