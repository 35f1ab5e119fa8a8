"""WeCom's callbacks: the endpoint, the receiver (signature, timestamp, decryption), the XML, the inbox."""
