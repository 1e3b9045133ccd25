"""The cloud seam: the Protocol every command speaks, and its boto3 implementation (AWS or the local moto)."""
