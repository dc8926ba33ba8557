"""The web page at ``/``: try the categorizer in a browser (plain HTML, CSS and JavaScript).

It uses the public API only: ``POST /v1/jobs`` then ``GET /v1/jobs/<id>?wait=`` for one
product, and ``POST /v1/catalogs`` then ``GET /v1/catalogs/<id>`` (progress) for a catalog
file, whose results link is ``/v1/catalogs/<id>/results?format=csv``. When API keys are on, the
page asks for a key, keeps it in the tab's ``sessionStorage`` and sends it as ``X-API-Key`` (the
results are then fetched with the key and offered as a download of the fetched file). No build step: the
files in ``web/static`` and ``web/templates`` are served as they are.
"""

from __future__ import annotations

from flask import Blueprint, current_app, render_template

bp = Blueprint("ui", __name__, static_folder="static", static_url_path="/static", template_folder="templates")


@bp.get("/")
def index():
    return render_template(
        "index.html",
        review_threshold=current_app.config["REVIEW_THRESHOLD"],
        # with API keys on, the page asks for one and sends it with every API call
        auth_required=bool(current_app.extensions.get("categorizer.auth")),
    )
