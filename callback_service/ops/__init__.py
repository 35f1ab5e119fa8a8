"""Operations: the CLI, admin commands, reconcile's runner, directory import and the QR poster."""
