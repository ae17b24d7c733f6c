"""The HTTP floor: a bare ASGI app that answers every request with a fixed JSON body."""

BODY = b'{"predictions":[{"prediction":0}]}'


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": BODY})
