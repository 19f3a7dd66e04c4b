"""Emulated Entra ID, Microsoft Graph and Dataverse over real HTTPS, for tests and the demo.

Development only: never packaged for Azure (see .funcignore).
"""
