"""Obvious products (id, text, expected category) that any acceptable model gets right."""

CHARGER = ("charger", "USB-C fast phone charger 20W wall adapter with type C cable for smartphones", "Electronics")
SHIRT = ("shirt", "Men's 100% cotton casual shirt, slim fit, full sleeves, navy blue", "Clothing & Accessories")
NOVEL = (
    "novel",
    "The Silent Patient: a novel (paperback), a gripping psychological thriller by Alex Michaelides",
    "Books",
)
BUCKET = ("bucket", "Stainless steel bucket 12 litre with handle for home cleaning and mopping", "Household")

OBVIOUS = [CHARGER, SHIRT, NOVEL, BUCKET]
