"""The HTTP face: the ASGI middleware, ``Depends(limit(...))``, websockets, the OpenAPI
schema's limits, RFC 9457 bodies, and the app's routes as the middleware sees them."""
