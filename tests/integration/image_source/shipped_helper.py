"""A local module an Image ships with add_local_python_source (read by test_images.py)."""

GREETING = "shipped from the deploying machine"
