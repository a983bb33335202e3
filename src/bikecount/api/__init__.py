"""The HTTP face of bikecount: the RegModel API (port 8000) and the legacy ClassModel API (8080).

Apps are built by factories (``bikecount.api.regmodel:create_app``,
``bikecount.api.classmodel:create_app``) so that importing this package touches neither the disk
nor the network; ``uvicorn --factory`` calls them at start-up.
"""
