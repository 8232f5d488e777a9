"""Policy optimisation shared by every method: PPO-clip + k3 KL, one trainer loop."""
