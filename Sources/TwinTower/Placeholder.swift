// placeholder until the TwinTower core lands
