"""keeper: watches loans on DeFi lending protocols and acts before they go bad."""

__version__ = "0.1.0"
