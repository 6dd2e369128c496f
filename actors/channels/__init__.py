"""Channels: the WebSocket gateway, the HTTP endpoint and Telegram, over one `Gateway`."""

from actors.channels.client import DEFAULT_URL, GatewayClient
from actors.channels.console import chat_command, send_command, status_command
from actors.channels.gateway import SHUTDOWN_CODE, Gateway, Run
from actors.channels.http import HTTP_NAME, HttpApp, http_spec
from actors.channels.metrics import MetricsSnapshot, render
from actors.channels.telegram import TELEGRAM_NAME, BotApi, OffsetStore, telegram_spec
from actors.channels.websocket import WEBSOCKET_NAME, WebSocketGateway, websocket_spec

__all__ = [
    "DEFAULT_URL",
    "HTTP_NAME",
    "SHUTDOWN_CODE",
    "TELEGRAM_NAME",
    "WEBSOCKET_NAME",
    "BotApi",
    "Gateway",
    "GatewayClient",
    "HttpApp",
    "MetricsSnapshot",
    "OffsetStore",
    "Run",
    "WebSocketGateway",
    "chat_command",
    "http_spec",
    "render",
    "send_command",
    "status_command",
    "telegram_spec",
    "websocket_spec",
]
