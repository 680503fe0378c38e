"""Health and metrics of the live server."""


def test_health_and_metrics(client, role_headers) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    client.get("/api/v1/catalog/datasets/SWJ-0001", headers=role_headers["reviewer"])
    text = client.get("/metrics").text
    assert 'route="/api/v1/catalog/datasets/{code}"' in text
    assert "govdx_http_request_duration_seconds_bucket" in text
    assert "SWJ-0001" not in text and "reviewer1" not in text


def test_serve_command_is_importable() -> None:
    import inspect

    from govdx.cli._serve import serve_command

    params = inspect.signature(serve_command).parameters
    assert params["host"].default == "127.0.0.1" and params["port"].default == 8000
